// uws_seed.cpp -- the seed protocol (first message = uid, then "uid:message", "all:message") on
// uWebSockets, for `BENCH_UWS=... make bench` (README, "Performance"): written the way a uWS user
// would (a uid map for routing, uWS's own pub/sub for "all"), built outside this repository
// against a clone of uWebSockets and uSockets; nothing of theirs is kept here.
#include "App.h"
#include <cstdlib>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

struct Session {
    std::string uid;
    bool logged = false;
};
using WS = uWS::WebSocket<false, true, Session>;

static std::unordered_map<std::string, std::unordered_set<WS *>> by_uid;

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 1234;
    uWS::App app;
    uWS::App *appp = &app;
    app.ws<Session>("/*", {
        .compression = uWS::DISABLED,
        .maxPayloadLength = 64 * 1024,
        .idleTimeout = 0,
        .maxBackpressure = 1024 * 1024,
        .message = [appp](WS *ws, std::string_view msg, uWS::OpCode op) {
            Session *s = ws->getUserData();
            if (!s->logged) {
                if (msg.empty() || msg.size() > 128 || msg.find(':') != std::string_view::npos || msg == "all") {
                    ws->send("login failed: bad uid", uWS::TEXT);
                    return;
                }
                s->uid = std::string(msg);
                s->logged = true;
                by_uid[s->uid].insert(ws);
                ws->subscribe("all");
                ws->send("login success, your uid is " + s->uid, uWS::TEXT);
                return;
            }
            size_t colon = msg.find(':');
            if (colon == std::string_view::npos) {
                ws->send("error: expected target:message", uWS::TEXT);
                return;
            }
            std::string_view target = msg.substr(0, colon), payload = msg.substr(colon + 1);
            if (target == "all") {
                appp->publish("all", payload, op);
                return;
            }
            auto it = by_uid.find(std::string(target));
            if (it != by_uid.end())
                for (WS *to : it->second)
                    to->send(payload, op);
        },
        .close = [](WS *ws, int, std::string_view) {
            Session *s = ws->getUserData();
            if (!s->logged)
                return;
            auto it = by_uid.find(s->uid);
            if (it != by_uid.end()) {
                it->second.erase(ws);
                if (it->second.empty())
                    by_uid.erase(it);
            }
        },
    }).listen("127.0.0.1", port, [port](auto *ls) {
        if (!ls) { fprintf(stderr, "cannot listen on %d\n", port); exit(1); }
    }).run();
}
