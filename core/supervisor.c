/* supervisor.c -- the --workers parent (see supervisor.h). It owns no client: only processes,
 * signals and the port reservations that make "port 0" one concrete port for every worker. */
#include "supervisor.h"

#include <errno.h>
#include <ev.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "log.h"
#include "net.h"
#include "scoreboard.h"
#include "server.h"

#define MAX_WORKERS 256

static struct {
    struct uc_cli *cli;
    int (*run)(struct uc_cli *cli);
    pid_t pids[MAX_WORKERS];
    ev_tstamp started[MAX_WORKERS];
    double backoff[MAX_WORKERS];
    ev_timer restart[MAX_WORKERS];
    ev_child child[MAX_WORKERS];
    ev_signal sigterm, sigint, sighup;
    int stopping;
    unsigned alive;
} sv;

/* The signals a worker handles: blocked from before the fork until the worker's server has
 * its handlers (uc_server_new unblocks them), so a SIGHUP forwarded to a worker still
 * starting is kept for it instead of killing it. */
static void block_worker_signals(int how)
{
    sigset_t set;
    uc_server_signals(&set);
    sigprocmask(how, &set, NULL);
}

static void spawn(struct ev_loop *loop, unsigned i)
{
    pid_t parent = getpid();
    block_worker_signals(SIG_BLOCK);
    pid_t pid = fork();
    if (pid != 0)
        block_worker_signals(SIG_UNBLOCK);
    if (pid < 0) {
        uc_error("cannot fork worker %u: %s", i, strerror(errno));
        return;
    }
    if (pid == 0) {
        /* A worker must not outlive its supervisor: orphans would keep the port (shared with
         * SO_REUSEPORT) and serve an old script next to a restarted uidcast. SIGTERM, so it
         * drains its connections; the check catches a supervisor that died before the prctl. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(0);
        /* The worker builds its own loop: drop every supervisor watcher first, or libev's
         * process-wide signal table would still run them in the worker. */
        ev_signal_stop(loop, &sv.sigterm);
        ev_signal_stop(loop, &sv.sigint);
        ev_signal_stop(loop, &sv.sighup);
        for (unsigned k = 0; k < sv.cli->opt.workers; k++) {
            ev_child_stop(loop, &sv.child[k]);
            ev_timer_stop(loop, &sv.restart[k]);
        }
        ev_loop_fork(loop);
        ev_loop_destroy(loop);
        sv.cli->opt.worker = i;
        _exit(sv.run(sv.cli));
    }
    sv.pids[i] = pid;
    sv.started[i] = ev_now(loop);
    sv.alive++;
    ev_child_set(&sv.child[i], pid, 0);
    ev_child_start(loop, &sv.child[i]);
    uc_info("worker %u started (pid %d)", i, (int)pid);
}

static void restart_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    unsigned i = (unsigned)(w - sv.restart);
    if (!sv.stopping)
        spawn(loop, i);
}

static void child_cb(struct ev_loop *loop, ev_child *w, int revents)
{
    (void)revents;
    unsigned i = (unsigned)(w - sv.child);
    ev_child_stop(loop, w);
    sv.alive--;
    sv.pids[i] = 0;
    if (sv.cli->opt.scoreboard)
        uc_scoreboard_retire(sv.cli->opt.scoreboard, i);
    if (sv.stopping) {
        if (!sv.alive)
            ev_break(loop, EVBREAK_ALL);
        return;
    }
    /* A worker that dies soon after starting keeps dying: wait longer each time (up to 10 s)
     * instead of spinning; one that ran for a while is replaced at once. But never leave the
     * port without a worker for long: when none is alive or about to start, this one comes
     * back within 0.1 s whatever its back-off. */
    double ran = ev_now(loop) - sv.started[i];
    sv.backoff[i] = ran > 10 ? 0 : sv.backoff[i] ? sv.backoff[i] * 2 : 0.1;
    if (sv.backoff[i] > 10)
        sv.backoff[i] = 10;
    double delay = sv.backoff[i];
    if (!sv.alive && delay > 0.1) {
        int starting_soon = 0;
        for (unsigned k = 0; k < sv.cli->opt.workers; k++)
            if (k != i && ev_is_active(&sv.restart[k]) &&
                ev_timer_remaining(loop, &sv.restart[k]) <= 0.1)
                starting_soon = 1;
        if (!starting_soon)
            delay = 0.1;
    }
    uc_warn("worker %u (pid %d) %s %d; restarting in %.1f s", i, (int)w->rpid,
            WIFSIGNALED(w->rstatus) ? "killed by signal" : "exited with",
            WIFSIGNALED(w->rstatus) ? WTERMSIG(w->rstatus) : WEXITSTATUS(w->rstatus), delay);
    ev_timer_set(&sv.restart[i], delay, 0.);
    ev_timer_start(loop, &sv.restart[i]);
}

static void forward(int sig)
{
    for (unsigned i = 0; i < sv.cli->opt.workers; i++)
        if (sv.pids[i])
            kill(sv.pids[i], sig);
}

static void signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)revents;
    if (w->signum == SIGHUP) {
        uc_info("SIGHUP: reloading every worker");
        forward(SIGHUP);
        return;
    }
    uc_info("%s: stopping %u workers", w->signum == SIGTERM ? "SIGTERM" : "SIGINT", sv.alive);
    sv.stopping = 1;
    for (unsigned i = 0; i < sv.cli->opt.workers; i++)
        ev_timer_stop(loop, &sv.restart[i]);
    forward(SIGTERM);
    if (!sv.alive)
        ev_break(loop, EVBREAK_ALL);
}

int uc_supervise(struct uc_cli *cli, int (*run)(struct uc_cli *cli))
{
    char err[512], addr[300];
    /* Reserve concrete ports first: with "port 0" every worker would otherwise get its own. */
    int reserved_ws = uc_net_reserve(cli->opt.listen, addr, sizeof addr, err, sizeof err);
    if (reserved_ws < 0) {
        uc_error("%s", err);
        return 1;
    }
    snprintf(cli->opt.listen, sizeof cli->opt.listen, "%s", addr);
    int reserved_push = -1;
    if (strcmp(cli->opt.push, "off") != 0) {
        reserved_push = uc_net_reserve(cli->opt.push, addr, sizeof addr, err, sizeof err);
        if (reserved_push < 0) {
            uc_error("%s", err);
            close(reserved_ws);
            return 1;
        }
        snprintf(cli->opt.push, sizeof cli->opt.push, "%s", addr);
    }
    sv.cli = cli;
    sv.run = run;
    /* Without it /stats would answer for one random worker; with it, for all. */
    cli->opt.scoreboard = uc_scoreboard_new(cli->opt.workers);
    if (!cli->opt.scoreboard)
        uc_warn("cannot map the shared counters: /stats and /metrics answer per worker");
    struct ev_loop *loop = ev_default_loop(EVFLAG_AUTO);
    ev_signal_init(&sv.sigterm, signal_cb, SIGTERM);
    ev_signal_init(&sv.sigint, signal_cb, SIGINT);
    ev_signal_init(&sv.sighup, signal_cb, SIGHUP);
    ev_signal_start(loop, &sv.sigterm);
    ev_signal_start(loop, &sv.sigint);
    ev_signal_start(loop, &sv.sighup);
    uc_info("supervisor: %u workers on ws://%s/", cli->opt.workers, cli->opt.listen);
    for (unsigned i = 0; i < cli->opt.workers; i++) {
        ev_child_init(&sv.child[i], child_cb, 0, 0);
        ev_init(&sv.restart[i], restart_cb);
    }
    for (unsigned i = 0; i < cli->opt.workers; i++)
        spawn(loop, i);
    ev_run(loop, 0);
    close(reserved_ws);
    if (reserved_push >= 0)
        close(reserved_push);
    uc_scoreboard_free(cli->opt.scoreboard);
    uc_info("supervisor: every worker stopped");
    return 0;
}
