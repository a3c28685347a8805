// Preemption signals: SIGTERM (Slurm's end-of-time or scancel) and SIGUSR2 (sbatch --signal)
// only set a flag here; the trainer reads it at a step boundary, agrees on it across ranks,
// checkpoints, and exits with kExitRequeue so the job script can requeue the job.
#pragma once

namespace vdm {

// Exit codes of `vdm train` (documented in docs/checkpoints.md).
constexpr int kExitCompleted = 0;
constexpr int kExitFailed = 1;   // an error; the message says which
constexpr int kExitUsage = 2;    // bad command line or config
constexpr int kExitDiverged = 4; // too many non-finite steps in a row; checkpointed first
constexpr int kExitRequeue = 75; // checkpointed after SIGTERM/SIGUSR2: please requeue (EX_TEMPFAIL)

// Installs the handlers (idempotent). Signals already pending before this are not lost: the
// handler only records which one arrived.
void install_stop_signal_handlers();
// The signal number received since installation, or 0.
int stop_signal_received();
// For tests: forget a received signal.
void clear_stop_signal();

}  // namespace vdm
