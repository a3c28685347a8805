// Preemption agreement at a step boundary: SIGTERM/SIGUSR2 only set a flag on the rank that got
// them (stop_signal.h); one max-all-reduce of the flags makes every rank stop at the same step,
// however the signal was delivered.
#pragma once

#include <cstdint>

namespace vdm {

class Communicator;
class Watchdog;

// Collective. The signal number some rank received since the handlers were installed, or 0.
int agreed_stop_signal(Communicator& comm, Watchdog& watchdog, int64_t step);

}  // namespace vdm
