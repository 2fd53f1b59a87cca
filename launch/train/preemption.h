// Preemption: SIGTERM, SIGUSR1 and SIGINT only set a flag (the handler does nothing else, so it is
// async-signal-safe and a second signal cannot interrupt a checkpoint half-way). The trainer asks
// stop_requested() at every step boundary; the ranks agree on it with one allreduce, write a
// checkpoint and exit (docs/checkpoints.md: which signals reach the ranks under mpirun and Slurm).
#pragma once

#include "comm/communicator.h"

namespace mowe::train {

// Installs the handlers (SA_RESTART, so interrupted system calls resume). Idempotent.
void install_stop_handlers();

// The first stop signal this process received, or 0.
int stop_signal();

// Collective: the stop signal any rank received (the largest number when several), or 0.
int stop_requested(comm::Communicator& comm);

// For tests: forget a received signal.
void reset_stop_signal();

}  // namespace mowe::train
