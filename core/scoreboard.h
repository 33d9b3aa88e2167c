/* scoreboard.h -- the counters of every --workers process in one shared mapping, so that /stats
 * and /metrics on any worker answer for the whole server, as Apache's scoreboard does.
 *
 * The supervisor maps it before forking; each worker writes only its own slot (its counters,
 * republished every liveness tick), any worker reads them all. A worker that dies has its
 * counters moved into the retired totals, so a counter summed over the workers never goes
 * down when one is replaced (Prometheus would see a reset). Gauges of a dead worker vanish. */
#ifndef UC_SCOREBOARD_H
#define UC_SCOREBOARD_H

#include <sys/types.h>

#include "procstat.h"
#include "server.h"

struct uc_scoreboard;

/* Maps a scoreboard for n workers, shared with every process forked after. NULL on failure. */
struct uc_scoreboard *uc_scoreboard_new(unsigned n);
void uc_scoreboard_free(struct uc_scoreboard *sb);

/* The worker in slot publishes its pid and counters (uptime aside). */
void uc_scoreboard_publish(struct uc_scoreboard *sb, unsigned slot, pid_t pid,
                           const struct uc_stats *s);

/* The supervisor saw the worker in slot die: its counters join the retired totals. */
void uc_scoreboard_retire(struct uc_scoreboard *sb, unsigned slot);

/* Sums every slot and the retired totals into *out (uptime and process figures untouched),
 * and adds each live worker's process figures into *proc. Returns the live workers. */
unsigned uc_scoreboard_sum(const struct uc_scoreboard *sb, struct uc_stats *out,
                           struct uc_process_stats *proc);

#endif
