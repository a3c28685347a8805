// `vdm train [CONFIG] [key=value ...] [--run-dir DIR] [--resume auto|none|PATH]`: maps the config
// onto TrainerOptions, prepares the run directory, and runs the Trainer on every MPI rank. With
// no CONFIG it trains the built-in quickstart (configs/quickstart.yaml, compiled in).
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <sstream>
#include <stdexcept>

#include "data/atomic_file.h"
#include "distributed/process_context.h"
#include "launch/commands.h"
#include "launch/config.h"
#include "launch/module_options.h"
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
std::vector<std::string> resume_breaking_differences(const RunConfig& now, const RunConfig& then) {
  std::vector<std::string> out;
  auto cmp = [&](const std::string& key, const auto& a, const auto& b) {
    if (a == b) return;
    std::ostringstream line;
    line << key << ": checkpoint " << b << ", now " << a;
    out.push_back(line.str());
  };
  cmp("model.preset", now.model.preset, then.model.preset);
  cmp("model.channels", now.model.channels, then.model.channels);
  cmp("model.num_classes", now.model.num_classes, then.model.num_classes);
  cmp("data.format (image channels)", data_channels(now.data), data_channels(then.data));
  cmp("data.resolution", now.data.resolution, then.data.resolution);
  cmp("schedule.name", now.schedule.name, then.schedule.name);
  cmp("schedule.hidden", now.schedule.hidden, then.schedule.hidden);
  cmp("objective.parameterisation", now.objective.parameterisation, then.objective.parameterisation);
  cmp("objective.proposal.name", now.objective.proposal.name, then.objective.proposal.name);
  cmp("objective.proposal.bins", now.objective.proposal.bins, then.objective.proposal.bins);
  return out;
}

TrainerOptions trainer_options(const RunConfig& c, const std::string& run_dir, const std::string& resume) {
  TrainerOptions o;
  o.seed = c.seed;
  o.run_dir = run_dir;
  o.config_text = c.resolved_yaml;
  o.model = model_options(c);
  o.schedule = c.schedule;
  o.objective = c.objective;
  o.data = data_options(c, false);
  o.eval_data = data_options(c, true);
  o.loader.batch_size = c.train.batch_size;
  o.loader.workers = c.data.workers;
  o.loader.flip = c.data.flip;
  o.loader.seed = c.seed;
  o.loader.on_error = c.data.on_error;
  o.steps = c.train.steps;
  o.grad_accum = c.train.grad_accum;
  o.lr.lr = c.train.lr;
  o.lr.warmup_steps = c.train.warmup_steps;
  o.lr.shape = c.train.lr_schedule;
  o.grad_clip = c.train.grad_clip;
  o.weight_decay = c.train.weight_decay;
  o.adam_beta1 = c.train.adam_beta1;
  o.adam_beta2 = c.train.adam_beta2;
  o.ema.decay = c.train.ema_decay;
  o.threads = c.train.threads;
  o.bf16 = c.train.bf16;
  o.channels_last = c.train.channels_last;
  o.max_nonfinite_steps = c.train.max_nonfinite_steps;
  o.log_every = c.train.log_every;
  o.checkpoint_every = c.checkpoint.every;
  o.keep_last = c.checkpoint.keep_last;
  o.keep_every = c.checkpoint.keep_every;
  o.resume = resume;
  o.eval_every = c.eval.every;
  o.eval = evaluator_options(c, run_dir);
  o.reducer.bucket_mb = c.distributed.bucket_mb;
  o.reducer.first_bucket_mb = c.distributed.first_bucket_mb;
  o.reducer.find_unused = c.distributed.find_unused;
  o.timeout_s = c.distributed.timeout_s;
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
    throw ConfigError("--resume " + a.resume + ": not a checkpoint folder; give auto, none, or a "
                      "RUN/checkpoints/step_XXXXXXXX folder");
  const std::string run_dir = a.run_dir.empty() ? (fs::path("runs") / cfg.name).string() : a.run_dir;

  ProcessContextOptions po;
  po.device = cfg.train.device;
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
