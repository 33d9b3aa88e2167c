/* supervisor.h -- --workers N: a parent process that forks N workers sharing the listeners,
 * restarts a worker that dies (with a back-off if it keeps dying), forwards SIGHUP and
 * SIGTERM/SIGINT, and exits 0 once every worker has stopped. */
#ifndef UC_SUPERVISOR_H
#define UC_SUPERVISOR_H

struct uc_cli;

/* Runs the worker body run(cli) in each child (it returns the worker's exit status). Returns
 * the supervisor's exit status. cli->opt.listen and push are rewritten to concrete ports. */
int uc_supervise(struct uc_cli *cli, int (*run)(struct uc_cli *cli));

#endif
