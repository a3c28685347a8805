// Sweep reports (see sweep_report.h). The w(lambda) curves come from the objective each point
// trained with (make_objective, as `vdm inspect objective` builds it), so the figure shows what
// was optimised, not a re-derivation of it.
#include "report/sweep_report.h"

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "objectives/objective.h"
#include "report/svg_plot.h"
#include "training/run_directory.h"

namespace vdm {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::vector<json> read_jsonl(const fs::path& path) {
  std::vector<json> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    const json j = json::parse(line, nullptr, false);
    if (j.is_object()) out.push_back(j);
  }
  return out;
}

double number(const json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<double>() : NAN;
}

std::string fmt(double v, const char* format = "%.4g") {
  if (!std::isfinite(v)) return "";
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

std::string describe_objective(const ObjectiveOptions& o) {
  if (o.name != "weighted") return o.name;
  std::string w = o.weighting.name;
  if (w == "sigmoid") w += "(b=" + fmt(o.weighting.bias, "%g") + ")";
  if (o.proposal.name != "schedule") w += ", p=" + o.proposal.name;
  return w;
}


std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

void read_point(PointResult& p, const fs::path& dir, const PointInput& in) {
  if (in.config_state == PointInput::Config::missing) {
    p.status = "missing";
    return;
  }
  if (in.config_state == PointInput::Config::bad) {
    p.status = "bad config";
    return;
  }
  p.steps_total = in.config.steps_total;
  p.objective = describe_objective(in.config.objective);
  for (const auto& m : read_jsonl(RunDirectory(dir).metrics())) {
    const double step = number(m, "step"), loss = number(m, "loss");
    if (!std::isfinite(step)) continue;
    p.steps_done = static_cast<long long>(step);
    p.loss_steps.push_back(step);
    p.losses.push_back(loss);
    p.final_loss = loss;
  }
  for (const auto& e : read_jsonl(RunDirectory(dir).eval_log())) {
    if (std::isfinite(number(e, "fid"))) p.fid = number(e, "fid");
    if (!std::isfinite(number(e, "bpd"))) continue;  // the last bits/dim record speaks for the rest
    p.bpd = number(e, "bpd");
    p.bpd_stderr = number(e, "bpd_stderr");
    p.augmented_elbo = number(e, "augmented_elbo_bpd");
    p.augmented_elbo_stderr = number(e, "augmented_elbo_stderr");
    p.not_monotone = e.contains("weighting_monotone") && e["weighting_monotone"].is_boolean() &&
                     !e["weighting_monotone"].get<bool>();
  }
  const auto attempts = read_jsonl(dir / "attempts.jsonl");
  double total = 0;
  for (const auto& a : attempts) total += number(a, "end") - number(a, "start");
  if (!attempts.empty()) p.run_time_s = total;

  const bool finished = p.steps_total > 0 && p.steps_done >= p.steps_total;
  const int last_code = attempts.empty() ? -1 : attempts.back().value("exit_code", -1);
  if (last_code == 0 || (attempts.empty() && finished))
    p.status = "done";
  else if (last_code == 75)
    p.status = "requeued";
  else if (last_code > 0)
    p.status = "failed (exit " + std::to_string(last_code) + ")";
  else
    p.status = p.steps_done >= 0 ? "running" : "not started";
}

// w(lambda) normalised to its maximum on the grid, so weightings of any scale share one axis.
std::vector<double> weighting_curve(const PointConfig& cfg, const std::vector<double>& grid) {
  torch::NoGradGuard no_grad;
  const Objective objective = make_objective(cfg.objective, make_schedule(cfg.schedule));
  const auto w = objective->weighting(torch::tensor(grid, torch::kFloat64)).contiguous();
  std::vector<double> out(grid.size());
  double top = 0;
  for (size_t i = 0; i < grid.size(); ++i) {
    out[i] = w[static_cast<int64_t>(i)].item<double>();
    if (std::isfinite(out[i])) top = std::max(top, std::abs(out[i]));
  }
  if (top > 0)
    for (double& v : out) v /= top;
  return out;
}

std::string point_name(const PointResult& p) { return std::to_string(p.index) + " " + p.label; }

// "5.7301 ± 0.0095", or the value alone when there is no error bar.
std::string with_error(double value, double error, const char* format) {
  if (!std::isfinite(value)) return "";
  return fmt(value, format) + (std::isfinite(error) ? " ± " + fmt(error, format) : "");
}

std::string augmented_cell(const PointResult& p) {
  return p.not_monotone ? "not monotone" : with_error(p.augmented_elbo, p.augmented_elbo_stderr, "%.4f");
}

}  // namespace

SweepReport collect_sweep_report(const SweepInput& sweep) {
  const fs::path dir(sweep.dir);
  SweepReport r;
  r.name = sweep.name;
  r.dir = sweep.dir;
  for (const auto& in : sweep.points) {
    PointResult p;
    p.index = in.index;
    p.label = in.label;
    p.dir = in.dir;
    p.final_loss = p.bpd = p.fid = p.run_time_s = NAN;
    p.bpd_stderr = p.augmented_elbo = p.augmented_elbo_stderr = NAN;
    read_point(p, dir / p.dir, in);
    r.points.push_back(std::move(p));
  }

  // One lambda grid spanning every point's schedule (of the points whose config was read).
  const auto read = [&](size_t i) { return sweep.points[i].config_state == PointInput::Config::read; };
  double lo = INFINITY, hi = -INFINITY;
  for (size_t i = 0; i < sweep.points.size(); ++i) {
    if (!read(i)) continue;
    const NoiseSchedule s = make_schedule(sweep.points[i].config.schedule);
    lo = std::min(lo, -s->gamma_at_1());
    hi = std::max(hi, -s->gamma_at_0());
  }
  if (lo < hi)
    for (int k = 0; k < 241; ++k) r.lambda_grid.push_back(lo + (hi - lo) * k / 240.0);
  for (size_t i = 0; i < sweep.points.size(); ++i) {
    if (!read(i)) continue;
    try {
      r.points[i].w = weighting_curve(sweep.points[i].config, r.lambda_grid);
    } catch (const std::exception&) {
      // A config this build cannot turn into an objective: the table still lists the point.
    }
  }
  return r;
}

std::string report_csv(const SweepReport& r) {
  std::ostringstream out;
  out << "index,label,objective,status,steps,final_loss,test_bpd,test_bpd_stderr,weighting_monotone,"
         "augmented_elbo_bpd,augmented_elbo_stderr,fid,run_time_s\n";
  for (const auto& p : r.points)
    out << p.index << ',' << csv_field(p.label) << ',' << csv_field(p.objective) << ',' << csv_field(p.status)
        << ',' << (p.steps_done >= 0 ? std::to_string(p.steps_done) : "") << ',' << fmt(p.final_loss, "%.6g")
        << ',' << fmt(p.bpd, "%.6g") << ',' << fmt(p.bpd_stderr, "%.3g") << ','
        << (p.not_monotone ? "false" : std::isfinite(p.augmented_elbo) ? "true" : "") << ','
        << fmt(p.augmented_elbo, "%.6g") << ',' << fmt(p.augmented_elbo_stderr, "%.3g") << ',' << fmt(p.fid, "%.6g") << ',' << fmt(p.run_time_s, "%.1f")
        << '\n';
  return out.str();
}

std::string report_markdown(const SweepReport& r) {
  auto cell = [](const std::string& s) { return s.empty() ? std::string("—") : s; };
  std::ostringstream out;
  out << "# Sweep " << r.name << "\n\n"
      << "| # | point | objective | status | steps | final loss | test bpd | augmented ELBO (bpd) | FID | run time (s) |\n"
      << "|---|---|---|---|---|---|---|---|---|---|\n";
  for (const auto& p : r.points) {
    const std::string steps = p.steps_done < 0 ? "" : std::to_string(p.steps_done) + "/" + std::to_string(p.steps_total);
    out << "| " << p.index << " | " << p.label << " | " << cell(p.objective) << " | " << p.status << " | "
        << cell(steps) << " | " << cell(fmt(p.final_loss)) << " | " << cell(with_error(p.bpd, p.bpd_stderr, "%.4f"))
        << " | " << cell(augmented_cell(p)) << " | " << cell(fmt(p.fid, "%.2f")) << " | "
        << cell(fmt(p.run_time_s, "%.0f")) << " |\n";
  }
  return out.str();
}

std::vector<NamedPlot> report_plots(const SweepReport& r) {
  std::vector<PlotSeries> loss, weights;
  std::vector<BarItem> bpd, fid, augmented;
  bool any_fid = false;
  for (const auto& p : r.points) {
    loss.push_back({point_name(p), p.loss_steps, p.losses, false});
    // Dashed every other curve: equal weightings (IDDPM's sech and eps-MSE's under a cosine
    // schedule) lie on top of each other and both stay visible.
    if (!p.w.empty()) weights.push_back({point_name(p), r.lambda_grid, p.w, p.index % 2 == 1});
    const std::string note = p.status == "done" ? "no value" : p.status;
    bpd.push_back({point_name(p), p.bpd, note});
    augmented.push_back({point_name(p), p.augmented_elbo, p.not_monotone ? "not monotone" : note});
    fid.push_back({point_name(p), p.fid, note});
    any_fid = any_fid || std::isfinite(p.fid);
  }
  std::vector<NamedPlot> plots;
  PlotOptions lo;
  lo.title = "training loss per point (log scale)";
  lo.x_label = "step";
  lo.y_label = "loss";
  lo.log_y = true;
  plots.push_back({"loss", render_svg_plot(loss, lo)});
  PlotOptions wo;
  wo.title = "weighting w(lambda) of each point, normalised to max 1";
  wo.x_label = "lambda = log SNR";
  wo.y_label = "w / max w";
  plots.push_back({"weighting", render_svg_plot(weights, wo)});
  PlotOptions bo;
  bo.title = "test bits/dim per point (lower is better)";
  bo.y_label = "bits/dim";
  plots.push_back({"bpd", render_svg_bars(bpd, bo)});
  PlotOptions ao;
  ao.title = "augmented ELBO of each weighting, bits/dim (one scale for all monotone w)";
  ao.y_label = "bits/dim";
  plots.push_back({"augmented_elbo", render_svg_bars(augmented, ao)});
  PlotOptions fo;
  fo.title = any_fid ? "FID per point (lower is better)" : "FID per point: not computed (eval.fid.enabled)";
  fo.y_label = "FID";
  plots.push_back({"fid", render_svg_bars(fid, fo)});
  return plots;
}

std::string report_html(const SweepReport& r) {
  std::ostringstream out;
  out << "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Sweep " << xml_escape(r.name)
      << "</title>\n<style>body{font-family:sans-serif;margin:24px;max-width:1600px}"
         "table{border-collapse:collapse;margin-bottom:20px}td,th{border:1px solid #ccc;padding:4px 10px;"
         "text-align:right}td:nth-child(2),td:nth-child(3),td:nth-child(4){text-align:left}"
         ".bad{color:#b00;font-weight:bold}.figs{display:flex;flex-wrap:wrap;gap:12px}</style></head><body>\n"
      << "<h1>Sweep " << xml_escape(r.name) << "</h1>\n<p>" << xml_escape(r.dir) << " &middot; "
      << r.points.size() << " point(s)</p>\n<table>\n<tr><th>#</th><th>point</th><th>objective</th><th>status</th>"
         "<th>steps</th><th>final loss</th><th>test bpd</th><th>augmented ELBO (bpd)</th><th>FID</th>"
         "<th>run time (s)</th></tr>\n";
  for (const auto& p : r.points) {
    const bool bad = p.status != "done";
    const std::string steps = p.steps_done < 0 ? "" : std::to_string(p.steps_done) + "/" + std::to_string(p.steps_total);
    out << "<tr><td>" << p.index << "</td><td>" << xml_escape(p.label) << "</td><td>" << xml_escape(p.objective)
        << "</td><td" << (bad ? " class=\"bad\"" : "") << ">" << xml_escape(p.status) << "</td><td>" << steps
        << "</td><td>" << fmt(p.final_loss) << "</td><td>" << with_error(p.bpd, p.bpd_stderr, "%.4f") << "</td><td>"
        << xml_escape(augmented_cell(p)) << "</td><td>" << fmt(p.fid, "%.2f") << "</td><td>" << fmt(p.run_time_s, "%.0f") << "</td></tr>\n";
  }
  out << "</table>\n<div class=\"figs\">\n";
  for (const auto& plot : report_plots(r)) out << plot.svg;
  out << "</div>\n</body></html>\n";
  return out.str();
}

}  // namespace vdm
