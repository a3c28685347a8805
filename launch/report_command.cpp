// `vdm report SWEEP_DIR`: writes SWEEP_DIR/report.{csv,md,html} (table of each point's final loss,
// test bpd, FID, run time and status; loss, w(lambda) and bpd/FID plots) and prints the Markdown.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <iostream>

#include "data/atomic_file.h"
#include "launch/commands.h"
#include "launch/sweep_report.h"

namespace vdm {
namespace {

int run_report(const std::string& sweep_dir) {
  const SweepReport report = collect_sweep_report(sweep_dir);
  const std::filesystem::path dir(sweep_dir);
  write_file_atomically((dir / "report.csv").string(), report_csv(report));
  const std::string markdown = report_markdown(report);
  write_file_atomically((dir / "report.md").string(), markdown);
  write_file_atomically((dir / "report.html").string(), report_html(report));
  std::cout << markdown << std::flush;
  spdlog::info("wrote {0}/report.csv, {0}/report.md and {0}/report.html", sweep_dir);
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
