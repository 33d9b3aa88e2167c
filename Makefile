# uidcast -- `make run` and `make test` do every set-up step on a fresh Debian machine (as root).

CC       ?= cc
BUILD    ?= build
CFLAGS   ?= -O2 -g
CFLAGS   += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -pthread \
            $(shell pkg-config --cflags lua5.4 2>/dev/null)
LDLIBS   += $(shell pkg-config --libs lua5.4 2>/dev/null || echo -llua5.4) \
            -lev -lwslay -lhttp_parser -lcrypto -lm

# Debian packages the build, the specs and the interop client need.
DEB_PACKAGES := gcc make pkg-config liblua5.4-dev lua5.4 libev-dev libwslay-dev \
                libhttp-parser-dev libssl-dev uthash-dev lua-busted lua-socket \
                python3 python3-websockets valgrind

CORE_SRC := core/buf.c core/outq.c core/http.c core/umap.c core/ws.c core/conn.c \
            core/net.c core/server.c core/log.c core/cli.c \
            core/push.c core/stats.c core/utf8.c
LUA_SRC  := lua/vm.c lua/call.c lua/conn.c lua/api.c lua/timer.c lua/policy.c
SRC      := $(CORE_SRC) $(LUA_SRC) core/main.c
OBJ      := $(SRC:%.c=$(BUILD)/obj/%.o)
HEADERS  := $(wildcard core/*.h lua/*.h)

CTESTS   := $(patsubst core/tests/%.c,$(BUILD)/tests/%,$(wildcard core/tests/test_*.c))
TEST_OBJ := $(filter-out $(BUILD)/obj/core/main.o,$(OBJ))

BUSTED   := lua5.4 /usr/bin/busted

.PHONY: all deps run test ctests clean

all: $(BUILD)/uidcast

deps:
	@missing=$$(for p in $(DEB_PACKAGES); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	  done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(BUILD)/obj/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/uidcast: $(OBJ)
	$(CC) $(CFLAGS) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/tests/%: core/tests/%.c core/tests/check.h $(TEST_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) $< $(TEST_OBJ) -o $@ $(LDLIBS)

# deps runs first in its own step: the flags above come from pkg-config, which a fresh machine
# only has once deps installed it, so the build is a second make that reads them anew.
run: deps
	@$(MAKE) --no-print-directory all
	./$(BUILD)/uidcast --listen 127.0.0.1:1234 scripts/default.lua

# Every suite, then one line "N passed, M failed" over all of them.
test: deps
	@$(MAKE) --no-print-directory all ctests
	@BUSTED="$(BUSTED)" CTESTS="$(CTESTS)" sh spec/run-all.sh

ctests: $(CTESTS)

clean:
	rm -rf $(BUILD)
