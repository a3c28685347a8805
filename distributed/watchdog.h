// The collective watchdog: a background thread that aborts the whole job (MPI_Abort) when a
// collective has been running longer than the timeout, with one message naming the operation
// and the training step, so a lost rank or a mismatched collective never hangs a job silently.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

namespace vdm {

class Watchdog {
 public:
  // timeout_s <= 0 disables the watchdog.
  explicit Watchdog(double timeout_s);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // Marks a collective as running until the returned guard is destroyed. Collectives are
  // issued one at a time per rank (one is watched at a time; nested scopes keep the outer).
  class Scope {
   public:
    Scope(Scope&& other) noexcept : dog_(other.dog_) { other.dog_ = nullptr; }
    ~Scope();

   private:
    friend class Watchdog;
    explicit Scope(Watchdog* dog) : dog_(dog) {}
    Watchdog* dog_;
  };
  Scope watch(std::string operation, int64_t step);

 private:
  void loop();
  double timeout_s_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stop_ = false, active_ = false;
  std::string operation_;
  int64_t step_ = 0;
  std::chrono::steady_clock::time_point started_;
  std::thread thread_;
};

}  // namespace vdm
