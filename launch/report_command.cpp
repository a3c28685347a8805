// `vdm report SWEEP_DIR`: writes SWEEP_DIR/report.{csv,md,html} (table of each point's final loss,
// test bpd, FID, run time and status; loss, w(lambda) and bpd/FID plots) and prints the Markdown.
// Reads sweep.json and each point's config.yaml here; report/ does the rest from plain data.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <fstream>
#include <iostream>

#include "data/atomic_file.h"
#include "launch/commands.h"
#include "launch/config.h"
#include "report/sweep_report.h"
#include "training/run_directory.h"

namespace vdm {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// SWEEP_DIR/sweep.json (written by `vdm sweep`) and what report/ needs from each point's config.
SweepInput read_sweep(const std::string& sweep_dir) {
  const fs::path dir(sweep_dir);
  std::ifstream in(dir / "sweep.json");
  if (!in)
    throw ConfigError(sweep_dir + ": no sweep.json; give a folder made by `vdm sweep` (runs/<sweep name>)");
  const json desc = json::parse(in, nullptr, false);
  if (!desc.is_object() || !desc.contains("points"))
    throw ConfigError((dir / "sweep.json").string() + ": not a sweep description (no points); was it edited?");

  SweepInput sweep;
  sweep.name = desc.value("name", dir.filename().string());
  sweep.dir = sweep_dir;
  for (const auto& jp : desc["points"]) {
    PointInput p;
    p.index = jp.value("index", sweep.points.size());
    p.label = jp.value("label", "");
    p.dir = jp.value("dir", "");
    const std::string config = RunDirectory(dir / p.dir).config();
    if (fs::is_regular_file(config)) {
      try {
        const RunConfig cfg = load_config(config);
        p.config = {cfg.train.steps, cfg.train.schedule, cfg.train.objective};
        p.config_state = PointInput::Config::read;
      } catch (const ConfigError&) {
        p.config_state = PointInput::Config::bad;
      }
    }
    sweep.points.push_back(std::move(p));
  }
  return sweep;
}

int run_report(const std::string& sweep_dir) {
  const SweepReport report = collect_sweep_report(read_sweep(sweep_dir));
  const std::filesystem::path dir(sweep_dir);
  write_file_atomically((dir / "report.csv").string(), report_csv(report));
  const std::string markdown = report_markdown(report);
  write_file_atomically((dir / "report.md").string(), markdown);
  write_file_atomically((dir / "report.html").string(), report_html(report));
  for (const auto& plot : report_plots(report))
    write_file_atomically((dir / ("report_" + plot.name + ".svg")).string(), plot.svg);
  std::cout << markdown << std::flush;
  spdlog::info("wrote {0}/report.csv, {0}/report.md, {0}/report.html and the plots as {0}/report_*.svg", sweep_dir);
  return 0;
}

}  // namespace

void add_report_command(CLI::App& app) {
  auto dir = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand("report", "Summarise a sweep: table (CSV, Markdown) and an HTML page with plots");
  cmd->add_option("sweep_dir", *dir, "the sweep's folder (runs/<sweep name>, with sweep.json)")->required();
  cmd->callback([dir] { throw CommandExit{run_report(*dir)}; });
}

}  // namespace vdm
