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

#include "objectives/objective.h"

namespace vdm {

// what() is the complete message for the user; callers print it as is.
struct ConfigError : std::runtime_error {
  using runtime_error::runtime_error;
};

struct DataConfig {
  std::string format = "idx";  // idx | imagefolder | packed
  std::string path;
  int64_t resolution = 32;
  std::string split = "train";
  std::string eval_split = "test";
  bool flip = true;
  int64_t workers = 2;
  std::string on_error = "skip";  // skip | fail: what an undecodable image does
};

struct ModelConfig {
  std::string preset = "tiny";  // tiny | quickstart | cifar10_vdm | imagenet64_adm
  int64_t channels = 0;         // 0: the preset's width
  double dropout = -1.0;        // < 0: the preset's dropout
  int64_t num_classes = 0;  // 0: unconditional
};

struct TrainConfig {
  int64_t steps = 1000;
  int64_t batch_size = 64;
  double lr = 2e-4;
  int64_t warmup_steps = 0;
  std::string lr_schedule = "constant";  // constant | linear | cosine
  double grad_clip = 1.0;                // 0: off
  double ema_decay = 0.9999;
  int64_t grad_accum = 1;
  int64_t threads = 1;
  std::string device = "cpu";  // cpu | cuda
  int64_t log_every = 10;
  double weight_decay = 0.0;       // AdamW's decoupled decay
  double adam_beta1 = 0.9;
  double adam_beta2 = 0.99;        // VDM's choice; PyTorch's default is 0.999
  bool bf16 = false;               // bf16 autocast of the network's forward (CPU or CUDA)
  bool channels_last = false;      // NHWC weights and activations (GPU convolutions in bf16 want it)
  int64_t max_nonfinite_steps = 10;  // K non-finite steps in a row: checkpoint and stop
};

struct CheckpointConfig {
  int64_t every = 0;  // 0: off (as for every periodic action)
  int64_t keep_last = 3;
  int64_t keep_every = 0;
};

struct EvalConfig {
  int64_t every = 0;
  int64_t num_samples = 64;
  std::string sampler = "ancestral";  // ancestral | ddim | heun
  int64_t steps = 256;
  bool bpd = true;
  bool fid = false;          // eval.fid.enabled
  std::string fid_features;  // eval.fid.features: a TorchScript file, or "builtin" (trained on the data)
  int64_t fid_samples = 1000;  // eval.fid.num_samples: generated images per FID
  std::string fid_reference;   // eval.fid.reference: .npz stats; "" = the eval split's, computed once
  int64_t batch_size = 64;
  int64_t bpd_samples = 0;  // held-out images for bits/dim; 0: the whole split
};

struct DistributedConfig {
  double bucket_mb = 25;
  double first_bucket_mb = 1;
  double timeout_s = 600;
  bool find_unused = false;  // parameters without a gradient in a step are reduced as zero
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

struct RunConfig {
  std::string name = "run";
  uint64_t seed = 0;
  DataConfig data;
  ModelConfig model;
  ScheduleOptions schedule;
  ObjectiveOptions objective;
  TrainConfig train;
  CheckpointConfig checkpoint;
  EvalConfig eval;
  DistributedConfig distributed;
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
