// `vdm inspect objective CONFIG [key=value ...]`: tabulates the objective's weighting w(lambda),
// proposal density p(lambda), their ratio (the per-example loss weight), monotonicity and the
// implied noise-augmentation density, as CSV, prints w(lambda_min), and draws them in an SVG. `vdm inspect model CONFIG`: the network's size and cost. Both
// build their piece exactly as training would.
#include <CLI/CLI.hpp>
#include <yaml-cpp/yaml.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <sstream>
#include <stdexcept>

#include "launch/commands.h"
#include "launch/config.h"
#include "data/atomic_file.h"
#include "report/svg_plot.h"
#include "models/model_presets.h"
#include "objectives/objective.h"

namespace vdm {
namespace {

struct InspectArgs {
  std::string config;
  std::vector<std::string> overrides;
  std::string lambdas, csv, plot;
  int points = 201;
};

std::vector<double> parse_lambdas(const std::string& text) {
  std::vector<double> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    double v = 0;
    try {
      v = std::stod(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size() || !std::isfinite(v))
      throw CLI::ValidationError("--lambda", "'" + item + "' is not a finite number; give a "
                                 "comma-separated list such as --lambda=-2,0,2");
    out.push_back(v);
  }
  if (out.empty()) throw CLI::ValidationError("--lambda", "no values given");
  return out;
}

std::string fmt(double v) {
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (std::isnan(v)) return "nan";
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

std::string describe(const ObjectiveOptions& o, const ScheduleOptions& s) {
  std::string text = "objective " + o.name + ", schedule " + s.name;
  if (o.name == "weighted")
    text += ", weighting " + o.weighting.name + ", proposal " + o.proposal.name;
  if (o.timesteps > 0) text += ", T=" + std::to_string(o.timesteps);
  return text;
}

void inspect_objective(const InspectArgs& args) {
  RunConfig cfg = load_config(args.config, args.overrides);
  Objective objective;
  try {
    objective = make_objective(cfg.train.objective, make_schedule(cfg.train.schedule));
  } catch (const std::invalid_argument& e) {
    throw ConfigError(args.config + ": " + e.what());
  }
  torch::NoGradGuard no_grad;

  std::vector<double> grid;
  if (!args.lambdas.empty()) {
    grid = parse_lambdas(args.lambdas);
  } else {
    // The schedule's own lambda range, from high noise to low noise.
    const auto [lo, hi] = schedule_lambda_range(objective->schedule());
    for (int i = 0; i < args.points; ++i) grid.push_back(lo + (hi - lo) * i / (args.points - 1));
  }
  auto lambda = torch::tensor(grid, torch::kFloat64);
  auto w = objective->weighting(lambda).contiguous();
  auto p = objective->proposal().density(lambda).contiguous();
  const bool monotone = objective->monotone();
  // The loss integrates over the proposal's range; a monotone w spreads its mass w(lambda_min) over
  // noise-augmentation levels with density -w'(lambda) / w(lambda_min) plus an atom w(lambda_max) /
  // w(lambda_min) at lambda_max (objectives/objective.cpp, add_augmented_elbo).
  const auto [range_lo, range_hi] = objective->proposal().range();
  auto w_at = [&](double l) { return objective->weighting(torch::full({1}, l, torch::kFloat64)).item<double>(); };
  const double w_min = w_at(range_lo), w_max = w_at(range_hi);
  // One-sided at the ends of the range (w may vanish outside it, as eps-MSE's 2p does), and no
  // density outside the range, where the loss has no mass.
  auto slope = [&](double l) {
    if (l < range_lo || l > range_hi) return 0.0;
    const double h = 1e-5 * (1.0 + std::abs(l));
    const double a = std::max(range_lo, l - h), b = std::min(range_hi, l + h);
    return (w_at(b) - w_at(a)) / (b - a);
  };

  std::ostringstream csv;
  csv << "lambda,w,p,weight,monotone,augmentation\n";
  std::vector<double> wv(grid.size()), pv(grid.size()), av(grid.size());
  for (size_t i = 0; i < grid.size(); ++i) {
    wv[i] = w[i].item<double>();
    pv[i] = p[i].item<double>();
    av[i] = monotone && w_min > 0 ? std::max(0.0, -slope(grid[i])) / w_min : NAN;
    const double ratio = pv[i] > 0 ? wv[i] / pv[i] : (wv[i] == 0 ? 0.0 : INFINITY);
    csv << fmt(grid[i]) << ',' << fmt(wv[i]) << ',' << fmt(pv[i]) << ',' << fmt(ratio) << ','
        << (monotone ? "true" : "false") << ',' << (monotone ? fmt(av[i]) : "") << '\n';
  }
  std::cout << csv.str() << std::flush;
  if (!args.csv.empty()) write_file_atomically(args.csv, csv.str());

  std::cerr << describe(cfg.train.objective, cfg.train.schedule) << ": w(lambda) is "
            << (monotone ? "monotone (non-increasing), so the loss is an ELBO of noise-augmented "
                           "data (Kingma & Gao 2023)"
                         : "not monotone, so the loss is not an ELBO")
            << "\n";
  std::cerr << "lambda range [" << fmt(range_lo) << ", " << fmt(range_hi) << "]: w(lambda_min) = " << fmt(w_min)
            << ", w(lambda_max) = " << fmt(w_max);
  if (monotone && w_min > 0)
    std::cerr << "; the loss / w(lambda_min) averages ELBOs of data augmented with noise at lambda ~ "
                 "-w'(lambda)/w(lambda_min) (column augmentation) plus an atom of "
              << fmt(w_max / w_min) << " at lambda_max";
  std::cerr << "\n";

  if (!args.plot.empty()) {
    auto normalised = [](std::vector<double> v) {
      double top = 0;
      for (double x : v) if (std::isfinite(x)) top = std::max(top, std::abs(x));
      if (top > 0) for (double& x : v) x /= top;
      return v;
    };
    PlotOptions po;
    po.title = describe(cfg.train.objective, cfg.train.schedule) + (monotone ? " (monotone)" : " (not monotone)");
    po.x_label = "lambda = log SNR";
    po.y_label = "value / max over the grid";
    std::vector<PlotSeries> series{{"w(lambda)", grid, normalised(wv), false},
                                   {"p(lambda)", grid, normalised(pv), true}};
    if (monotone && w_min > 0) series.push_back({"-w'(lambda)/w(lambda_min)", grid, normalised(av), false});
    write_file_atomically(args.plot, render_svg_plot(series, po));
    std::cerr << "plot written to " << args.plot << "\n";
  }
}

// The resolved model: section (the preset's defaults with every override applied), then the
// network built from it. The config layer has already validated the architecture.
void inspect_model(const InspectArgs& args) {
  RunConfig cfg = load_config(args.config, args.overrides);
  const YAML::Node model = YAML::Load(cfg.resolved_yaml)["model"];
  YAML::Emitter out;
  out << YAML::BeginMap << YAML::Key << "model" << YAML::Value << model << YAML::EndMap;
  std::cout << out.c_str() << "\n";
  const DenoiserNet net = make_model(cfg.train.model);
  std::cout << net->summary() << "\n";
  std::cout << "parameters: " << net->parameter_count() << "\n";
  std::cout << "forward GFLOP per image: " << net->flops_per_image() / 1e9 << "\n";
}

}  // namespace

void add_inspect_command(CLI::App& app) {
  auto* inspect = app.add_subcommand("inspect", "Show what a config computes, without training");
  inspect->require_subcommand(1);
  auto* cmd = inspect->add_subcommand(
      "objective", "Print lambda,w,p,weight,monotone as CSV for the config's objective");
  auto args = std::make_shared<InspectArgs>();
  cmd->add_option("config", args->config, "YAML config file")->required();
  cmd->add_option("overrides", args->overrides, "key.path=value overrides (Hydra style)");
  cmd->add_option("--lambda", args->lambdas, "comma-separated lambda values (default: a grid "
                                              "over the schedule's lambda range)");
  cmd->add_option("--points", args->points, "grid size when --lambda is not given")
      ->check(CLI::Range(2, 1000000));
  cmd->add_option("--csv", args->csv, "also write the CSV to this file");
  cmd->add_option("--plot", args->plot, "draw w and p into this SVG file");
  cmd->callback([args] { inspect_objective(*args); });

  auto* model = inspect->add_subcommand(
      "model", "Print the config's network: architecture, parameter count, forward FLOPs/image");
  auto margs = std::make_shared<InspectArgs>();
  model->add_option("config", margs->config, "YAML config file")->required();
  model->add_option("overrides", margs->overrides, "key.path=value overrides (Hydra style)");
  model->callback([margs] { inspect_model(*margs); });
}

}  // namespace vdm
