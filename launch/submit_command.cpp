// `vdm submit CONFIG [key=value ...] [--run-dir DIR] [--dry-run]`: writes RUN/config.yaml (the
// resolved config) and RUN/job.sbatch (slurm/job.sbatch.in with the config's slurm section), runs
// sbatch and prints the job id; --dry-run prints the script and writes nothing.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <iostream>

#include "data/atomic_file.h"
#include "launch/child_process.h"
#include "launch/commands.h"
#include "launch/config.h"
#include "launch/slurm_script.h"
#include "training/run_directory.h"

namespace vdm {
namespace {

namespace fs = std::filesystem;

struct SubmitArgs {
  std::vector<std::string> positional;  // CONFIG then overrides
  std::string run_dir;
  bool dry_run = false;
};

std::string command_line(const std::string& command, const std::vector<std::string>& args) {
  std::string text = "vdm " + command;
  for (const auto& a : args) text += " " + shell_quote(a);
  return text;
}

int run_submit(const SubmitArgs& a) {
  std::error_code ec;
  if (a.positional.empty() ||
      (a.positional.front().find('=') != std::string::npos && !fs::is_regular_file(a.positional.front(), ec)))
    throw UsageError("vdm submit: give the config file first, e.g. vdm submit configs/quickstart.yaml "
                      "train.steps=1000");
  const std::vector<std::string> overrides(a.positional.begin() + 1, a.positional.end());
  const RunConfig cfg = load_config(a.positional.front(), overrides);
  // Data paths are checked by `vdm train` on the compute node: a login node may not mount them.
  const fs::path run_dir = fs::absolute(a.run_dir.empty() ? fs::path("runs") / cfg.name : fs::path(a.run_dir));

  SlurmScriptOptions so;
  so.slurm = cfg.slurm;
  so.job_name = cfg.name;
  so.vdm = cfg.slurm.vdm.empty() ? current_executable() : fs::absolute(cfg.slurm.vdm).string();
  so.workdir = fs::current_path().string();
  so.run_dirs = {run_dir.lexically_normal().string()};
  so.log_dir = so.run_dirs.front();
  std::vector<std::string> args = a.positional;
  if (!a.run_dir.empty()) args.insert(args.end(), {"--run-dir", a.run_dir});
  so.rendered_by = command_line("submit", args);
  const std::string script = render_slurm_script(so);
  if (a.dry_run) {
    std::cout << script << std::flush;
    return 0;
  }

  fs::create_directories(run_dir);
  if (fs::exists(fs::path(RunDirectory(run_dir).checkpoints()) / "latest"))
    spdlog::info("{} holds checkpoints: the job continues from the newest one", run_dir.string());
  write_file_atomically(RunDirectory(run_dir).config(), cfg.resolved_yaml);
  const std::string script_path = (run_dir / "job.sbatch").string();
  write_file_atomically(script_path, script);
  const std::string id = sbatch_submit(script_path);
  write_file_atomically((run_dir / "slurm_job_id").string(), id + "\n");
  spdlog::info("submitted job {}: script {}, log {}/slurm-{}.out", id, script_path, run_dir.string(), id);
  std::cout << id << std::endl;
  return 0;
}

}  // namespace

void add_submit_command(CLI::App& app) {
  auto args = std::make_shared<SubmitArgs>();
  auto* cmd = app.add_subcommand("submit", "Submit a training run to Slurm (sbatch); prints the job id");
  cmd->add_option("config", args->positional, "CONFIG.yaml then key.path=value overrides")->required();
  cmd->add_option("--run-dir", args->run_dir, "run directory (default runs/<name>)");
  cmd->add_flag("--dry-run", args->dry_run, "print the sbatch script; write and submit nothing");
  cmd->footer("The job runs `vdm train RUN/config.yaml --run-dir RUN --resume auto` under srun --mpi=pmix "
              "(or mpirun: slurm.launcher), passes USR2/TERM on to it, and requeues itself when it "
              "exits 75 (checkpointed). See docs/slurm.md.");
  cmd->callback([args] { throw CommandExit{run_submit(*args)}; });
}

}  // namespace vdm
