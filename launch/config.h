// The run configuration: a YAML file plus Hydra-style `key.path=value` overrides, validated into
// the plain option structs the other modules take. YAML stays behind this header
// (docs/design.md §1), and every bad input becomes one ConfigError naming file:line (or the
// override), key and fix.
#pragma once

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "distributed/process_context.h"
#include "training/trainer.h"

namespace vdm {

// what() is the complete message for the user; callers print it as is.
struct ConfigError : std::runtime_error {
  using runtime_error::runtime_error;
};

struct SlurmConfig {
  int64_t nodes = 1;
  int64_t tasks_per_node = 1;
  int64_t gpus_per_node = 0;
  int64_t cpus_per_task = 2;
  std::string time = "01:00:00";
  std::string partition;
  std::string account;
  std::string qos;
  int64_t signal_lead_s = 90;
  std::vector<std::string> extra;          // extra #SBATCH lines' options, e.g. --exclusive
  std::map<std::string, std::string> env;  // exported in the job script
  std::string launcher = "srun";           // srun | mpirun
  std::string vdm;       // the vdm binary the job runs; "": the one that renders the script
  std::string template_path;  // slurm.template: an sbatch template file; "": the built-in one
  // Automatic requeues after exit 75 before the job script stops asking (a run that keeps
  // being stopped must not cycle through the queue forever); 0: never requeue.
  int64_t max_requeues = 50;
};

// The YAML sections map onto the modules' own options (docs/design.md §8 lists every key):
// data:, model:, schedule:, objective:, train:, checkpoint:, eval: and distributed: are read
// straight into `train` (TrainerOptions and the options structs it holds), train.device into
// `process`, slurm: into `slurm`. Derived fields (the data's channel count in the model and the
// datasets, the held-out split's DataOptions, seeds) are filled in after reading.
struct RunConfig {
  std::string name = "run";
  uint64_t seed = 0;
  TrainerOptions train;           // run_dir, resume, config_text and check_resume: set by vdm train
  ProcessContextOptions process;  // train.device
  SlurmConfig slurm;

  std::string source;         // config file path ("" for built-in)
  std::string resolved_yaml;  // every key, defaults and overrides included: RUN/config.yaml
  // Where each key that was given came from ("configs/x.yaml:7" or "command-line override
  // 'k=v'"), so later checks on a value can point at it; keys left at defaults are absent.
  std::map<std::string, std::string> origins;
};

// Reads the file, applies the overrides in order, validates. Throws ConfigError.
RunConfig load_config(const std::string& path, const std::vector<std::string>& overrides = {});
// As load_config on text; source_name stands for the file in messages.
RunConfig parse_config(const std::string& yaml_text, const std::string& source_name,
                       const std::vector<std::string>& overrides = {});
// The filesystem half of validation, kept apart so commands that never read data (inspect,
// submit on a login node without the data mount) can still load a config.
void check_paths(const RunConfig& cfg);

}  // namespace vdm
