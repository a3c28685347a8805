// The summary of a sweep behind `vdm report`: each point's status, final loss, test bits/dim and
// its standard error, the augmented ELBO of its weighting (monotone ones), FID and run time, read from the points' run directories (the sweep's points and their configs
// come as plain data), rendered as CSV, Markdown, and an HTML page with SVG plots.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "objectives/noise_schedule.h"
#include "objectives/objective.h"

namespace vdm {

// What the report needs from one point's config.yaml. launch/ reads the file; report/ knows no YAML.
struct PointConfig {
  long long steps_total = -1;  // train.steps
  ScheduleOptions schedule;    // the w(lambda) curve and the lambda range it is drawn over
  ObjectiveOptions objective;  // the table's "objective" column and the w(lambda) curve
};

// One point of the sweep as SWEEP_DIR/sweep.json lists it, with its config as far as it was read.
struct PointInput {
  size_t index = 0;
  std::string label;
  std::string dir;  // the run directory, relative to the sweep's folder
  enum class Config { read, missing, bad };  // missing: no config.yaml; bad: it would not load
  Config config_state = Config::missing;
  PointConfig config;  // only when config_state is read
};

struct SweepInput {
  std::string name, dir;  // dir: the sweep's folder, as given on the command line
  std::vector<PointInput> points;
};

struct PointResult {
  size_t index = 0;
  std::string label, dir;
  std::string objective;  // e.g. "weighted sigmoid(b=2)", "eps_mse", "vlb"
  std::string status;     // done | running | not started | requeued | failed (exit N) | bad config | missing
  long long steps_done = -1, steps_total = -1;
  double final_loss, bpd, fid, run_time_s;  // NaN when absent
  double bpd_stderr, augmented_elbo, augmented_elbo_stderr;  // eval.jsonl's; NaN when absent
  bool not_monotone = false;  // eval.jsonl says the weighting is not monotone: no augmented ELBO
  std::vector<double> loss_steps, losses;
  // w(lambda) / max w over lambda_grid; empty when the config could not be read.
  std::vector<double> w;
};

struct SweepReport {
  std::string name, dir;
  std::vector<double> lambda_grid;
  std::vector<PointResult> points;
};

// Reads each point's metrics.jsonl, eval.jsonl and attempts.jsonl and draws w(lambda) from its
// objective; a point's missing or broken files only set its status.
SweepReport collect_sweep_report(const SweepInput& sweep);

std::string report_csv(const SweepReport& report);
std::string report_markdown(const SweepReport& report);
std::string report_html(const SweepReport& report);
// The report's plots as standalone SVG documents (loss, weighting, bpd, augmented_elbo, fid), the
// ones report_html shows.
struct NamedPlot {
  std::string name, svg;
};
std::vector<NamedPlot> report_plots(const SweepReport& report);

}  // namespace vdm
