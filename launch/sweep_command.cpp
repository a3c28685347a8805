// `vdm sweep SWEEP.yaml [--sweep-dir DIR] [--local] [--dry-run]`: resolves every point's config
// (all errors before anything runs), writes SWEEP_DIR/<index>_<label>/config.yaml and
// SWEEP_DIR/sweep.json, then submits one job array, or with --local trains the points in turn.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "data/atomic_file.h"
#include "launch/child_process.h"
#include "launch/commands.h"
#include "launch/config.h"
#include "launch/slurm_script.h"
#include "launch/sweep.h"

namespace vdm {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct SweepArgs {
  std::string file, sweep_dir;
  bool local = false, dry_run = false;
};

struct ResolvedPoint {
  std::string dir;  // absolute
  std::vector<std::string> overrides;  // everything applied to the base, in order
  RunConfig config;
};

// The job array shares one set of sbatch resources, so points may not change them.
std::string slurm_settings(const SlurmConfig& s) {
  std::ostringstream out;
  out << s.nodes << '|' << s.tasks_per_node << '|' << s.gpus_per_node << '|' << s.cpus_per_task << '|'
      << s.time << '|' << s.partition << '|' << s.account << '|' << s.qos << '|' << s.signal_lead_s
      << '|' << s.launcher << '|' << s.vdm << '|' << s.template_path;
  for (const auto& e : s.extra) out << '|' << e;
  for (const auto& [k, v] : s.env) out << '|' << k << '=' << v;
  return out.str();
}

std::vector<ResolvedPoint> resolve(const Sweep& sweep, const fs::path& sweep_dir, bool local) {
  std::vector<ResolvedPoint> out;
  for (size_t i = 0; i < sweep.points.size(); ++i) {
    const std::string dir_name = point_dir_name(sweep, i);
    ResolvedPoint p;
    p.dir = (sweep_dir / dir_name).string();
    p.overrides = sweep.overrides;
    p.overrides.insert(p.overrides.end(), sweep.points[i].overrides.begin(), sweep.points[i].overrides.end());
    p.overrides.push_back("name=" + sweep.name + "_" + dir_name);
    try {
      p.config = load_config(sweep.base, p.overrides);
    } catch (const ConfigError& e) {
      throw ConfigError(sweep.source + ": point " + dir_name + ": " + e.what());
    }
    if (!local && !out.empty() && slurm_settings(p.config.slurm) != slurm_settings(out.front().config.slurm))
      throw ConfigError(sweep.source + ": point " + dir_name + " changes the slurm section; a job array "
                        "shares one set of resources, so set slurm.* in the base config or the common "
                        "overrides");
    out.push_back(std::move(p));
  }
  return out;
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// attempts.jsonl: one line per attempt, the same lines the sbatch script writes.
json last_attempt(const fs::path& dir, size_t* count = nullptr) {
  std::ifstream in(dir / "attempts.jsonl");
  json last;
  size_t n = 0;
  for (std::string line; std::getline(in, line);) {
    const json j = json::parse(line, nullptr, false);
    if (!j.is_discarded()) last = j, ++n;
  }
  if (count) *count = n;
  return last;
}

void append_line(const fs::path& file, const std::string& line) {
  std::ofstream out(file, std::ios::app);
  out << line << "\n";
}

int run_local(const Sweep& sweep, const std::vector<ResolvedPoint>& points) {
  const std::string vdm = current_executable();
  int failed = 0;
  for (size_t i = 0; i < points.size(); ++i) {
    const auto& p = points[i];
    const std::string tag = "[" + std::to_string(i + 1) + "/" + std::to_string(points.size()) + "] " +
                            fs::path(p.dir).filename().string();
    size_t attempts = 0;
    const json last = last_attempt(p.dir, &attempts);
    if (last.is_object() && last.value("exit_code", -1) == 0) {
      spdlog::info("{}: finished earlier; skipped", tag);
      continue;
    }
    spdlog::info("{}: training (log {}/train.log)", tag, p.dir);
    const double start = now_s();
    const int code = run_logged({vdm, "train", p.dir + "/config.yaml", "--run-dir", p.dir, "--resume", "auto"},
                                p.dir + "/train.log");
    const double end = now_s();
    append_line(fs::path(p.dir) / "attempts.jsonl",
                json{{"job", "local"}, {"restart", attempts}, {"start", start}, {"end", end}, {"exit_code", code}}.dump());
    if (code == 0) {
      spdlog::info("{}: done in {:.0f} s", tag, end - start);
    } else {
      ++failed;
      spdlog::error("{}: failed with exit code {} after {:.0f} s; see {}/train.log", tag, code, end - start, p.dir);
    }
  }
  if (failed) spdlog::error("{} of {} point(s) failed", failed, points.size());
  spdlog::info("summarise with: vdm report {}", fs::path(points.front().dir).parent_path().string());
  return failed ? 1 : 0;
}

int run_sweep(const SweepArgs& a) {
  const Sweep sweep = load_sweep(a.file);
  const fs::path sweep_dir =
      fs::absolute(a.sweep_dir.empty() ? fs::path("runs") / sweep.name : fs::path(a.sweep_dir)).lexically_normal();
  const auto points = resolve(sweep, sweep_dir, a.local);

  SlurmScriptOptions so;
  std::string script;
  if (!a.local) {
    so.slurm = points.front().config.slurm;
    so.job_name = sweep.name;
    so.vdm = so.slurm.vdm.empty() ? current_executable() : fs::absolute(so.slurm.vdm).string();
    so.workdir = fs::current_path().string();
    for (const auto& p : points) so.run_dirs.push_back(p.dir);
    so.array = true;
    so.log_dir = sweep_dir.string();
    so.max_parallel = sweep.max_parallel;
    so.rendered_by = "vdm sweep " + shell_quote(a.file) +
                     (a.sweep_dir.empty() ? "" : " --sweep-dir " + shell_quote(a.sweep_dir));
    script = render_slurm_script(so);
  }
  if (a.dry_run) {
    std::cerr << "sweep " << sweep.name << ": " << points.size() << " point(s) from " << sweep.base << " in "
              << sweep_dir.string() << "\n";
    std::cerr << "  common overrides:";
    for (const auto& o : sweep.overrides) std::cerr << " " << shell_quote(o);
    std::cerr << "\n";
    for (size_t i = 0; i < points.size(); ++i) {
      std::cerr << "  " << fs::path(points[i].dir).filename().string() << ":";
      for (const auto& o : sweep.points[i].overrides) std::cerr << " " << shell_quote(o);
      std::cerr << "\n";
    }
    std::cout << script << std::flush;
    return 0;
  }

  fs::create_directories(sweep_dir);
  json desc{{"name", sweep.name},
            {"source", fs::absolute(sweep.source).lexically_normal().string()},
            {"base", fs::absolute(sweep.base).lexically_normal().string()},
            {"overrides", sweep.overrides},
            {"mode", a.local ? "local" : "slurm"},
            {"max_parallel", sweep.max_parallel},
            {"created", now_s()},
            {"points", json::array()}};
  for (size_t i = 0; i < points.size(); ++i) {
    fs::create_directories(points[i].dir);
    write_file_atomically(points[i].dir + "/config.yaml", points[i].config.resolved_yaml);
    desc["points"].push_back({{"index", i},
                              {"label", sweep.points[i].label},
                              {"dir", fs::path(points[i].dir).filename().string()},
                              {"overrides", sweep.points[i].overrides}});
  }
  write_file_atomically((sweep_dir / "sweep.json").string(), desc.dump(2) + "\n");
  spdlog::info("sweep {}: {} point(s) in {}", sweep.name, points.size(), sweep_dir.string());
  if (a.local) return run_local(sweep, points);

  const std::string script_path = (sweep_dir / "job.sbatch").string();
  write_file_atomically(script_path, script);
  const std::string id = sbatch_submit(script_path);
  desc["job_id"] = id;
  write_file_atomically((sweep_dir / "sweep.json").string(), desc.dump(2) + "\n");
  spdlog::info("submitted job array {} ({} tasks{}); logs {}/slurm-{}_<index>.out; then: vdm report {}", id,
               points.size(), sweep.max_parallel > 0 ? ", " + std::to_string(sweep.max_parallel) + " at a time" : "",
               sweep_dir.string(), id, sweep_dir.string());
  std::cout << id << std::endl;
  return 0;
}

}  // namespace

void add_sweep_command(CLI::App& app) {
  auto args = std::make_shared<SweepArgs>();
  auto* cmd = app.add_subcommand("sweep", "Run a sweep: one Slurm job array, or --local one point after another");
  cmd->add_option("sweep", args->file, "SWEEP.yaml (base config + overrides + points/grid; docs/slurm.md)")->required();
  cmd->add_option("--sweep-dir", args->sweep_dir, "where the points' run directories go (default runs/<name>)");
  cmd->add_flag("--local", args->local, "train the points here, one after another, instead of submitting");
  cmd->add_flag("--dry-run", args->dry_run, "list the points and print the sbatch script; run nothing");
  cmd->callback([args] { throw CommandExit{run_sweep(*args)}; });
}

}  // namespace vdm
