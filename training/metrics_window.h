// The metrics of the steps since the last log line: each rank sums its StepResults; when a line
// is due, one all-reduce of the sums gives global means, which become a metrics.jsonl record and
// the progress line's text.
#pragma once

#include <c10/core/Device.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>

#include "training/elapsed_time.h"
#include "training/train_step.h"

namespace vdm {

class Communicator;
class Watchdog;

// Facts of the run that a record carries beside the window's sums.
struct MetricsContext {
  int64_t step = 0, epoch = 0;
  double lr = 0;
  int64_t batch_size = 0;  // per rank and micro-batch
  int world = 1;
  int64_t skipped_steps = 0, skipped_samples = 0;
  // MFU: the FLOPs of one training image (forward and backward) and the peak FLOP/s of all
  // ranks' devices together (training/utilisation.h); either 0 leaves the fields out.
  double train_flops_per_image = 0, peak_flops = 0;
  c10::Device device{c10::kCPU};  // whose allocator's peak memory is reported
};

class MetricsWindow {
 public:
  void add(const StepResult& result);
  int64_t steps() const { return steps_; }
  // Collective: every rank calls it with the same context; returns the record (the same on every
  // rank) and starts a new window.
  nlohmann::json reduce(Communicator& comm, Watchdog& watchdog, const MetricsContext& context);
  // Besides the means: per-phase milliseconds per step (ms_*), achieved TFLOP/s and MFU, and the
  // peak memory of the largest rank (max_rss_mib, and device_peak_mib on CUDA).
  // "step 40/400  loss 0.1234  bpd 4.56  810 img/s  0.25 TFLOP/s  MFU 31%  mem 612 MiB  data wait 1%  ETA 0:01:02"
  static std::string progress_text(const nlohmann::json& record, int64_t total_steps, double eta_s);

 private:
  int64_t steps_ = 0, micro_ = 0;
  double loss_ = 0, bpd_ = 0, data_wait_s_ = 0, grad_norm_ = 0;
  bool likelihood_ = false;
  std::map<std::string, double> terms_, phase_s_;
  SteadyClock::time_point start_ = SteadyClock::now();
};

}  // namespace vdm
