// `vdm train [CONFIG] [key=value ...] [--run-dir DIR] [--resume auto|none|PATH]`: maps the config
// onto TrainerOptions, prepares the run directory, and runs the Trainer on every MPI rank. With
// no CONFIG it trains the built-in quickstart (configs/quickstart.yaml, compiled in).
#include <CLI/CLI.hpp>
#include <yaml-cpp/yaml.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <sstream>
#include <stdexcept>

#include "data/atomic_file.h"
#include "distributed/process_context.h"
#include "launch/commands.h"
#include "launch/config.h"
#include "training/stop_signal.h"
#include "training/run_directory.h"
#include "training/trainer.h"
#include "vdm_builtin_configs.h"

namespace vdm {
namespace {

namespace fs = std::filesystem;

struct TrainArgs {
  std::vector<std::string> positional;  // [CONFIG] then overrides
  std::string run_dir, resume = "auto";
};

RunConfig load_train_config(const TrainArgs& a) {
  std::vector<std::string> overrides = a.positional;
  // A path may hold '=' (a sweep point's folder, SWEEP/1_sigmoid_bias=-2/config.yaml).
  std::error_code ec;
  if (!overrides.empty() &&
      (overrides.front().find('=') == std::string::npos || fs::is_regular_file(overrides.front(), ec))) {
    const std::string path = overrides.front();
    overrides.erase(overrides.begin());
    return load_config(path, overrides);
  }
  return parse_config(kQuickstartConfig, "(built-in quickstart config)", overrides);
}

// The settings a checkpoint cannot be continued under: they change parameter shapes, or what
// the stored parameters mean. Everything else (steps, lr, batch size, ...) may change on resume.
// The architecture is every key of model: but the preset's name (the keys decide) and dropout, compared in
// the resolved YAML, so a key added to the model is covered without being listed here.
std::vector<std::string> resume_breaking_differences(const RunConfig& now, const RunConfig& then) {
  const YAML::Node a = YAML::Load(now.resolved_yaml), b = YAML::Load(then.resolved_yaml);
  auto text = [](const YAML::Node& n) {
    YAML::Emitter e;
    e << YAML::Flow << n;
    return std::string(n.IsDefined() ? e.c_str() : "(none)");
  };
  std::vector<std::string> out;
  auto cmp = [&](const std::string& key, const std::string& x, const std::string& y) {
    if (x != y) out.push_back(key + ": checkpoint " + y + ", now " + x);
  };
  auto at = [](const YAML::Node& root, const std::string& section, const std::string& key) {
    return YAML::Node(root[section])[key];
  };
  // Dropout changes neither shapes nor what the weights mean.
  for (const auto& kv : a["model"])
    if (kv.first.Scalar() != "preset" && kv.first.Scalar() != "dropout")
      cmp("model." + kv.first.Scalar(), text(kv.second), text(at(b, "model", kv.first.Scalar())));
  cmp("data.format (image channels)", std::to_string(now.train.data.channels), std::to_string(then.train.data.channels));
  for (const auto& [section, key] : std::vector<std::pair<std::string, std::string>>{
           {"data", "resolution"}, {"schedule", "name"}, {"schedule", "hidden"}, {"schedule", "shift"},
           {"objective", "parameterisation"}})
    cmp(section + "." + key, text(at(a, section, key)), text(at(b, section, key)));
  // The adaptive histogram's bins only mean something over the same range and statistic.
  for (const char* key : {"name", "bins", "lambda_min", "lambda_max", "adaptive_target"})
    cmp(std::string("objective.proposal.") + key, text(a["objective"]["proposal"][key]),
        text(b["objective"]["proposal"][key]));
  return out;
}

TrainerOptions trainer_options(const RunConfig& c, const std::string& run_dir, const std::string& resume) {
  TrainerOptions o = c.train;
  o.run_dir = run_dir;
  o.eval.run_dir = run_dir;
  o.config_text = c.resolved_yaml;
  o.resume = resume;
  o.check_resume = [now = c](const std::string& checkpoint_config) {
    const RunConfig then = parse_config(checkpoint_config, "checkpoint config.yaml");
    const auto diff = resume_breaking_differences(now, then);
    if (diff.empty()) return;
    std::string message = "this config cannot resume the checkpoint; these settings differ:";
    for (const auto& d : diff) message += "\n  " + d;
    message += "\nrestore them, or start afresh with --resume none (or another --run-dir)";
    throw ConfigError(message);
  };
  return o;
}

int run_train(const TrainArgs& a) {
  // Errors in the config are found before MPI starts, so they end with exit code 2 on every rank
  // alike instead of an MPI_Abort.
  const RunConfig cfg = load_train_config(a);
  check_paths(cfg);
  if (a.resume != "auto" && a.resume != "none" && !fs::is_directory(a.resume))
    throw UsageError("--resume " + a.resume + ": not a checkpoint folder; give auto, none, or a "
                      "RUN/checkpoints/step_XXXXXXXX folder");
  const std::string run_dir = a.run_dir.empty() ? (fs::path("runs") / cfg.name).string() : a.run_dir;

  ProcessContextOptions po = cfg.process;
  po.exclusive_gpu = true;  // NCCL: one GPU per rank
  ProcessContext context(nullptr, nullptr, po);
  configure_rank_logging(context.rank(), context.world());
  return run_or_abort([&] {
    if (context.is_root()) {
      fs::create_directories(run_dir);
      write_file_atomically(RunDirectory(run_dir).config(), cfg.resolved_yaml);
      spdlog::info("run directory {} ({} rank(s), device {})", run_dir, context.world(), context.device().str());
    }
    Trainer trainer(trainer_options(cfg, run_dir, a.resume), context);
    return trainer.run().exit_code();
  });
}

}  // namespace

void add_train_command(CLI::App& app) {
  auto args = std::make_shared<TrainArgs>();
  auto* cmd = app.add_subcommand("train", "train a model (alone, or on every rank under mpirun/srun)");
  cmd->add_option("config", args->positional,
                  "CONFIG.yaml then key.path=value overrides (no CONFIG: the built-in quickstart)");
  cmd->add_option("--run-dir", args->run_dir, "run directory (default runs/<name>)");
  cmd->add_option("--resume", args->resume,
                  "auto: the newest complete checkpoint in the run directory; none; or a checkpoint folder");
  cmd->footer("Exit codes: 0 done, 1 error, 2 bad config or command line, " + std::to_string(kExitDiverged) +
              " stopped after repeated non-finite steps (checkpointed), " + std::to_string(kExitRequeue) +
              " checkpointed after SIGTERM/SIGUSR2: requeue the job.");
  cmd->callback([args] { throw CommandExit{run_train(*args)}; });
}

}  // namespace vdm
