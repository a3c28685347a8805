// Collective watchdog (see watchdog.h).
#include "distributed/watchdog.h"

#include <cstdio>

#include "distributed/process_context.h"

namespace vdm {

Watchdog::Watchdog(double timeout_s) : timeout_s_(timeout_s) {
  if (timeout_s_ > 0) thread_ = std::thread([this] { loop(); });
}

Watchdog::~Watchdog() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Watchdog::Scope Watchdog::watch(std::string operation, int64_t step) {
  if (timeout_s_ <= 0) return Scope(nullptr);
  std::lock_guard<std::mutex> lock(mutex_);
  if (active_) return Scope(nullptr);
  active_ = true;
  operation_ = std::move(operation);
  step_ = step;
  started_ = std::chrono::steady_clock::now();
  return Scope(this);
}

Watchdog::Scope::~Scope() {
  if (!dog_) return;
  std::lock_guard<std::mutex> lock(dog_->mutex_);
  dog_->active_ = false;
}

void Watchdog::loop() {
  const auto timeout = std::chrono::duration<double>(timeout_s_);
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stop_) {
    // Polling at a tenth of the timeout bounds the overshoot without a timer per collective.
    cv_.wait_for(lock, timeout / 10);
    if (stop_ || !active_) continue;
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    if (waited >= timeout_s_) {
      char msg[512];
      std::snprintf(msg, sizeof msg,
                    "collective %s at step %lld did not finish within %.0f s "
                    "(distributed.timeout_s); another rank probably died or is stuck. Aborting the job.",
                    operation_.c_str(), static_cast<long long>(step_), timeout_s_);
      abort_job(msg, 3);
    }
  }
}

}  // namespace vdm
