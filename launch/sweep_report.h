// The summary of a sweep behind `vdm report`: each point's status, final loss, test bits/dim,
// FID and run time, read from SWEEP_DIR/sweep.json and the points' run directories, rendered as
// CSV, Markdown, and an HTML page with SVG plots (loss curves, w(lambda), bpd/FID per point).
#pragma once

#include <string>
#include <vector>

namespace vdm {

struct PointResult {
  size_t index = 0;
  std::string label, dir;
  std::string objective;  // e.g. "weighted sigmoid(b=2)", "eps_mse", "vlb"
  std::string status;     // done | running | not started | requeued | failed (exit N) | missing
  long long steps_done = -1, steps_total = -1;
  double final_loss, bpd, fid, run_time_s;  // NaN when absent
  std::vector<double> loss_steps, losses;
  // w(lambda) / max w over lambda_grid; empty when the config could not be read.
  std::vector<double> w;
};

struct SweepReport {
  std::string name, dir;
  std::vector<double> lambda_grid;
  std::vector<PointResult> points;
};

// Throws ConfigError when SWEEP_DIR has no readable sweep.json; a point's missing or broken
// files only set its status.
SweepReport collect_sweep_report(const std::string& sweep_dir);

std::string report_csv(const SweepReport& report);
std::string report_markdown(const SweepReport& report);
std::string report_html(const SweepReport& report);

}  // namespace vdm
