// Async-signal-safe stop flag for SIGTERM and SIGUSR2 (see stop_signal.h).
#include "training/stop_signal.h"

#include <csignal>

namespace vdm {
namespace {

// sig_atomic_t, not std::atomic: the only type the C++ standard promises is safe to write from
// a signal handler on every platform.
volatile std::sig_atomic_t g_signal = 0;

extern "C" void record_signal(int signal) { g_signal = signal; }

}  // namespace

void install_stop_signal_handlers() {
  struct sigaction action {};
  action.sa_handler = record_signal;
  sigemptyset(&action.sa_mask);
  // SA_RESTART: a signal during a blocking read or MPI wait must not turn into EINTR errors.
  action.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGUSR2, &action, nullptr);
}

int stop_signal_received() { return g_signal; }
void clear_stop_signal() { g_signal = 0; }

}  // namespace vdm
