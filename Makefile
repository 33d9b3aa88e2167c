# uidcast -- `make run` and `make test` do every set-up step on a fresh Debian machine (as root).

CC       ?= cc
BUILD    ?= build
# -O3 and link-time optimisation: the path of a message crosses a dozen small functions in
# several files (a conn's id, its uid, a buffer's refcount), which LTO inlines across files
# (make profile: 3,230 -> 3,028 instructions per routed message against -O2).
CFLAGS   ?= -O3 -g -flto=auto
# The flags the code needs; CFLAGS (optimisation, sanitizers) may be overridden on the command line.
ALL_CFLAGS = $(CFLAGS) -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror \
             $(shell pkg-config --cflags lua5.4 2>/dev/null) \
             $(if $(CONFIG_FILE),-DUC_DEFAULT_CONFIG='"$(CONFIG_FILE)"') \
             $(if $(SCRIPT_DIR),-DUC_DEFAULT_SCRIPT='"$(SCRIPT_DIR)/default.lua"')
CORE_LIBS := -lev -lwslay -lhttp_parser -lhiredis -lcurl -lcrypto -lsodium -ljansson -linih -lm
LDLIBS   += $(shell pkg-config --libs lua5.4 2>/dev/null || echo -llua5.4) $(CORE_LIBS)

# Debian packages: what building and running need (make run), and what the suites add
# (make test): the test tools, redis-server and redis-sentinel for the cluster specs, the
# interop clients.
RUN_PACKAGES  := gcc make pkg-config libc6-dev liblua5.4-dev libev-dev libwslay-dev \
                 libhttp-parser-dev libssl-dev uthash-dev libhiredis-dev libjansson-dev libcurl4-openssl-dev libinih-dev libsodium-dev curl
TEST_PACKAGES := lua5.4 lua-busted lua-socket python3 python3-websockets valgrind clang \
                 libclang-rt-14-dev redis-server redis-sentinel openssl procps util-linux php-cli \
                 clang-format cppcheck lua-check help2man nodejs chromium lua-dkjson \
                 debhelper dpkg-dev lintian debootstrap

CORE_SRC := core/hashkey.c core/procstat.c core/scoreboard.c core/mailbox.c core/hub.c core/liveness.c core/buf.c core/outq.c core/http.c core/umap.c core/ws.c core/conn.c \
            core/net.c core/server.c core/log.c core/cli.c \
            core/push.c core/stats.c core/utf8.c core/redis_url.c core/broker.c core/streams.c core/www.c core/notify.c core/presence.c core/roster.c core/events.c core/cluster_events.c core/webhook.c core/acceptor.c core/poller.c core/httpd.c core/supervisor.c
LUA_SRC  := lua/vm.c lua/call.c lua/strmatch.c lua/conn.c lua/api.c lua/json.c lua/timer.c lua/policy.c
SRC      := $(CORE_SRC) $(LUA_SRC) core/main.c
OBJ      := $(SRC:%.c=$(BUILD)/obj/%.o)
HEADERS  := $(wildcard core/*.h lua/*.h)

CTESTS   := $(patsubst core/tests/%.c,$(BUILD)/tests/%,$(wildcard core/tests/test_*.c))
TEST_OBJ := $(filter-out $(BUILD)/obj/core/main.o,$(OBJ))

BUSTED   := lua5.4 /usr/bin/busted

.PHONY: all deps test-deps run test install install-files uninstall check format lint ctests spec-harness sanitize-build fuzz-build fuzz memcheck sanitize bench bench-deps profile clean

all: $(BUILD)/uidcast

# Installs the missing packages of the list given, with the apt options given. No service is started on the way: redis-server
# comes for the specs, which start their own, so invoke-rc.d is told no (policy-rc.d, 101) for
# the length of the install when the machine has no policy of its own.
install_packages = missing=$$(for p in $(1); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	  done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  policy=; if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    printf '\043!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && policy=1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2) $$missing >/dev/null; \
	  status=$$?; [ -n "$$policy" ] && rm -f /usr/sbin/policy-rc.d; exit $$status; \
	fi

# What running needs, lean: without the packages Debian merely recommends.
deps:
	@$(call install_packages,$(RUN_PACKAGES),--no-install-recommends)

# The browser specs' npm packages (playwright-core), pinned by spec/browser/package-lock.json;
# once installed, the suites run without the network.
test-deps: deps
	@$(call install_packages,$(TEST_PACKAGES))
	@[ -d spec/browser/node_modules/playwright-core ] || \
	  (cd spec/browser && npm ci --no-audit --no-fund --loglevel=error)

$(BUILD)/obj/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

# The commit the binary is built from, rewritten only when it changes (main.c prints it).
$(BUILD)/version.h: FORCE
	@mkdir -p $(BUILD)
	@commit=$$(git rev-parse --short HEAD 2>/dev/null || echo unknown); \
	  [ -z "$$(git status --porcelain -- core lua 2>/dev/null)" ] || commit="$$commit+changes"; \
	  line="#define UC_GIT_COMMIT \"$$commit\""; \
	  [ "$$(cat $@ 2>/dev/null)" = "$$line" ] || echo "$$line" > $@
FORCE:
$(BUILD)/obj/core/main.o: $(BUILD)/version.h
$(BUILD)/obj/core/main.o: ALL_CFLAGS += -I$(BUILD)

$(BUILD)/uidcast: $(OBJ)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/tests/%: core/tests/%.c core/tests/check.h $(TEST_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) $< $(TEST_OBJ) -o $@ $(LDLIBS)

# deps runs first in its own step: the flags above come from pkg-config, which a fresh machine
# only has once deps installed it, so the build is a second make that reads them anew.
# ARGS are passed on: make run ARGS="--listen 0.0.0.0:1234 --push-token s3cret"
run: deps
	@$(MAKE) --no-print-directory all
	./$(BUILD)/uidcast --listen 127.0.0.1:1234 --www www $(ARGS) scripts/default.lua

# Every suite, then one line "N passed, M failed" over all of them.
test: test-deps
	@$(MAKE) --no-print-directory all ctests spec-harness $(BUILD)/loadgen sanitize-build fuzz-build
	@BUSTED="$(BUSTED)" CTESTS="$(CTESTS)" FUZZ_SECONDS=$(FUZZ_SECONDS) FORMAT_SRC="$(FORMAT_SRC)" \
	  sh spec/run-all.sh

ctests: $(CTESTS)

# The edit loop: C unit tests and the scripts' unit specs, in seconds.
check: test-deps
	@$(MAKE) --no-print-directory all ctests spec-harness
	@BUSTED="$(BUSTED)" CTESTS="$(CTESTS)" sh spec/run-all.sh --only check

# C sources clang-format checks and rewrites (lua/strmatch.c's upstream part is marked off).
FORMAT_SRC := $(wildcard core/*.c core/*.h lua/*.c lua/*.h core/tests/*.c core/tests/*.h \
                         fuzz/*.c fuzz/*.h bench/*.c spec/harness/*.c)
format:
	clang-format -i $(FORMAT_SRC)

# clang-format, luacheck, cppcheck and the layering rule (tools/callgraph.sh); make test runs it.
lint: test-deps
	@$(MAKE) --no-print-directory all
	@FORMAT_SRC="$(FORMAT_SRC)" sh spec/run-all.sh --only lint

# ASan+UBSan build of the server (build/asan/uidcast), for `make sanitize` and `make test`.
SAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
sanitize-build:
	@$(MAKE) --no-print-directory BUILD=build/asan CFLAGS="$(SAN_FLAGS)" LDFLAGS="$(SAN_FLAGS)" all

# libFuzzer targets (clang), each with ASan+UBSan.
FUZZ_TARGETS := http_head push_request ws_frames split_reads
FUZZ_SECONDS ?= 60
FUZZ_CORE    := $(CORE_SRC:%.c=build/fuzz/obj/%.o)
FUZZ_CFLAGS  := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
                -fno-sanitize-recover=all -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror
build/fuzz/obj/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@
build/fuzz/%: fuzz/%.c fuzz/harness.h $(FUZZ_CORE)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer $< $(FUZZ_CORE) -o $@ $(CORE_LIBS)
fuzz-build: $(FUZZ_TARGETS:%=build/fuzz/%)

# Each fuzz target for FUZZ_SECONDS (default 60), starting from fuzz/corpus/<target>; what it
# learns goes to build/fuzz/corpus-<target>, never into the repository.
fuzz: test-deps
	@$(MAKE) --no-print-directory fuzz-build
	@FUZZ_SECONDS=$(FUZZ_SECONDS) sh spec/run-all.sh --only fuzz

# The integration specs with the server under valgrind / built with ASan+UBSan.
memcheck: test-deps
	@$(MAKE) --no-print-directory all $(BUILD)/loadgen
	@sh spec/run-all.sh --only memcheck
sanitize: test-deps
	@$(MAKE) --no-print-directory all $(BUILD)/loadgen sanitize-build
	@sh spec/run-all.sh --only sanitize

# The load generator (bench/loadgen.c) and the Node.js peer, then every workload for both.
$(BUILD)/loadgen: bench/loadgen.c
	@mkdir -p $(BUILD)
	$(CC) -O2 -g -std=c11 -Wall -Wextra -Werror $< -o $@

# What one loopback writev costs: the floor under every server's broadcast figures.
$(BUILD)/write_floor: bench/write_floor.c
	@mkdir -p $(BUILD)
	$(CC) -O2 -g -std=c11 -Wall -Wextra -Werror $< -o $@ -lpthread

# The least a server can do for route: the floor under every server's one-at-a-time figures.
$(BUILD)/route_floor: bench/route_floor.c
	@mkdir -p $(BUILD)
	$(CC) -O2 -g -std=c11 -Wall -Wextra -Werror $< -o $@ -lcrypto

bench/peer/node_modules/ws/package.json: bench/peer/package.json
	cd bench/peer && npm ci --no-audit --no-fund --silent

# Node.js for the peer: this machine image ships node and npm; elsewhere Debian's packages.
bench-deps: test-deps
	@command -v node >/dev/null && command -v npm >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null)
	@command -v taskset >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq util-linux >/dev/null

bench: bench-deps
	@$(MAKE) --no-print-directory all $(BUILD)/loadgen $(BUILD)/write_floor $(BUILD)/route_floor \
	  bench/peer/node_modules/ws/package.json
	@bash bench/run.sh

# Instructions per routed message and per broadcast delivery, under callgrind.
profile: test-deps
	@$(MAKE) --no-print-directory all $(BUILD)/loadgen
	@bash bench/profile.sh

# make install [PREFIX=/usr/local] [SYSCONFDIR=/etc] [DESTDIR=]: the binary (built to read
# SYSCONFDIR/uidcast/uidcast.conf when it exists), the scripts, a man page made from --help by
# help2man, the systemd unit, the README and the example config, which also becomes
# SYSCONFDIR/uidcast/uidcast.conf unless there is one; make uninstall takes away all but that.
PREFIX    ?= /usr/local
SYSCONFDIR ?= /etc
INSTALLED := bin/uidcast share/man/man1/uidcast.1 lib/systemd/system/uidcast.service \
             share/doc/uidcast/README.md share/doc/uidcast/uidcast.conf share/doc/uidcast/cluster.conf \
             $(patsubst %,share/uidcast/%,$(wildcard scripts/*.lua))
$(BUILD)/uidcast.1: $(BUILD)/uidcast
	help2man --no-info --name "WebSocket server that delivers messages to users by uid" \
	  --version-option=--version ./$(BUILD)/uidcast > $@
install: deps
	@$(call install_packages,help2man)
	@$(MAKE) --no-print-directory install-files
# install without the package step: for debian/rules, whose build dependencies are installed.
install-files:
	@$(MAKE) --no-print-directory BUILD=$(BUILD)/install CONFIG_FILE=$(SYSCONFDIR)/uidcast/uidcast.conf \
	  SCRIPT_DIR=$(PREFIX)/share/uidcast/scripts $(BUILD)/install/uidcast $(BUILD)/install/uidcast.1
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/uidcast/scripts \
	  $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/lib/systemd/system \
	  $(DESTDIR)$(PREFIX)/share/doc/uidcast $(DESTDIR)$(SYSCONFDIR)/uidcast
	install -m 755 $(BUILD)/install/uidcast $(DESTDIR)$(PREFIX)/bin/uidcast
	install -m 644 scripts/*.lua $(DESTDIR)$(PREFIX)/share/uidcast/scripts/
	install -m 644 $(BUILD)/install/uidcast.1 $(DESTDIR)$(PREFIX)/share/man/man1/uidcast.1
	sed 's|@PREFIX@|$(PREFIX)|g' dist/uidcast.service > $(DESTDIR)$(PREFIX)/lib/systemd/system/uidcast.service
	install -m 644 README.md $(DESTDIR)$(PREFIX)/share/doc/uidcast/README.md
	install -m 644 dist/uidcast.service.d/cluster.conf $(DESTDIR)$(PREFIX)/share/doc/uidcast/cluster.conf
	sed 's|/usr/share/uidcast|$(PREFIX)/share/uidcast|' dist/uidcast.conf > $(DESTDIR)$(PREFIX)/share/doc/uidcast/uidcast.conf
	[ -e $(DESTDIR)$(SYSCONFDIR)/uidcast/uidcast.conf ] || \
	  install -m 644 $(DESTDIR)$(PREFIX)/share/doc/uidcast/uidcast.conf $(DESTDIR)$(SYSCONFDIR)/uidcast/uidcast.conf
uninstall:
	rm -f $(addprefix $(DESTDIR)$(PREFIX)/,$(INSTALLED))
	-rmdir $(DESTDIR)$(PREFIX)/share/uidcast/scripts $(DESTDIR)$(PREFIX)/share/uidcast \
	  $(DESTDIR)$(PREFIX)/share/doc/uidcast 2>/dev/null

clean:
	rm -rf $(BUILD)

# The busted specs' real-server harness (spec/harness/harness.c): every object again as
# position-independent code, linked into a Lua module that specs `require "uidcast_harness"`.
PIC_OBJ := $(filter-out build/pic/core/main.o,$(SRC:%.c=build/pic/%.o))
build/pic/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -fPIC -c $< -o $@
$(BUILD)/spec/uidcast_harness.so: spec/harness/harness.c $(PIC_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -fPIC -shared $< $(PIC_OBJ) -o $@ $(CORE_LIBS)
spec-harness: $(BUILD)/spec/uidcast_harness.so
