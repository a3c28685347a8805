// Metrics window (see metrics_window.h).
#include "training/metrics_window.h"

#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <vector>

#include "distributed/communicator.h"
#include "distributed/watchdog.h"
#include "training/utilisation.h"

namespace vdm {

void MetricsWindow::add(const StepResult& r) {
  steps_ += 1;
  micro_ += r.micro_batches;
  loss_ += r.loss;
  bpd_ += r.bpd;
  likelihood_ = r.likelihood;
  data_wait_s_ += r.data_wait_s;
  grad_norm_ += r.finite ? r.grad_norm : 0.0;
  for (const auto& [name, value] : r.terms) terms_[name] += value;
  for (const auto& [name, value] : r.phase_s) phase_s_[name] += value;
}

nlohmann::json MetricsWindow::reduce(Communicator& comm, Watchdog& watchdog, const MetricsContext& c) {
  // [micro, loss, bpd, wait, terms...]; all ranks hold the same term names in the same (sorted)
  // order, since every rank runs the same objective.
  std::vector<double> sums{double(micro_), loss_, bpd_, data_wait_s_};
  for (const auto& [name, value] : terms_) sums.push_back(value);
  for (const auto& [name, value] : phase_s_) sums.push_back(value);
  auto t = torch::tensor(sums, torch::kFloat64);
  auto peaks = torch::tensor({peak_host_memory_mib(), peak_device_memory_mib(c.device)}, torch::kFloat64);
  {
    auto guard = watchdog.watch("all_reduce(metrics)", c.step);
    comm.all_reduce(t, ReduceOp::Sum);
    comm.all_reduce(peaks, ReduceOp::Max);
  }
  const double elapsed = seconds_between(start_, SteadyClock::now());
  const auto all = t.accessor<double, 1>();
  const double micro_all = all[0];
  nlohmann::json rec{{"step", c.step},
                     {"epoch", c.epoch},
                     {"loss", all[1] / micro_all},
                     {"grad_norm", grad_norm_ / double(steps_)},
                     {"lr", c.lr},
                     {"img_per_s", micro_all * double(c.batch_size) / elapsed},
                     {"data_wait_frac", all[3] / double(c.world) / elapsed},
                     {"skipped_steps", c.skipped_steps},
                     {"skipped_samples", c.skipped_samples}};
  if (likelihood_) rec["bpd"] = all[2] / micro_all;
  int64_t k = 4;
  for (const auto& [name, value] : terms_) rec[name] = all[k++] / micro_all;
  const double ms_per_step = 1e3 / double(c.world * steps_);
  rec["ms_data"] = all[3] * ms_per_step;
  for (const auto& [name, value] : phase_s_) rec["ms_" + name] = all[k++] * ms_per_step;
  const double img_per_s = rec["img_per_s"].get<double>();
  if (c.train_flops_per_image > 0) {
    const double achieved = img_per_s * c.train_flops_per_image;
    rec["tflops"] = achieved / 1e12;
    if (c.peak_flops > 0) rec["mfu"] = achieved / c.peak_flops;
  }
  rec["max_rss_mib"] = peaks[0].item<double>();
  if (c.device.is_cuda()) rec["device_peak_mib"] = peaks[1].item<double>();
  *this = MetricsWindow{};
  return rec;
}

std::string MetricsWindow::progress_text(const nlohmann::json& rec, int64_t total_steps, double eta_s) {
  char bpd[32] = "", flops[48] = "", mem[32] = "";
  if (rec.contains("bpd")) std::snprintf(bpd, sizeof bpd, "  bpd %.4f", rec["bpd"].get<double>());
  if (rec.contains("mfu"))
    std::snprintf(flops, sizeof flops, "  %.3g TFLOP/s  MFU %.0f%%", rec["tflops"].get<double>(),
                  100 * rec["mfu"].get<double>());
  const double mib = rec.contains("device_peak_mib") ? rec["device_peak_mib"].get<double>()
                                                     : rec.value("max_rss_mib", 0.0);
  if (mib > 0) std::snprintf(mem, sizeof mem, "  mem %.0f MiB", mib);
  char line[320];
  std::snprintf(line, sizeof line, "step %lld/%lld  loss %.4f%s  %.0f img/s%s%s  data wait %.0f%%  ETA %s",
                static_cast<long long>(rec["step"].get<int64_t>()), static_cast<long long>(total_steps),
                rec["loss"].get<double>(), bpd, rec["img_per_s"].get<double>(), flops, mem,
                100 * rec["data_wait_frac"].get<double>(), clock_text(eta_s).c_str());
  return line;
}

}  // namespace vdm
