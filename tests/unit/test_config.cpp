// Tests of the YAML config layer: defaults, full configs, Hydra-style overrides, the round trip
// through RUN/config.yaml, and that every kind of bad input yields one message naming the
// file:line (or the override), the dotted key and the fix.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "launch/config.h"
#include "tests/test_support.h"

namespace fs = std::filesystem;
using vdm::ConfigError;
using vdm::RunConfig;

namespace {

// A fresh directory per test, removed afterwards.
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a ConfigError";
  return "";
}

void expect_contains(const std::string& message, const std::vector<std::string>& parts) {
  for (const auto& part : parts)
    EXPECT_NE(message.find(part), std::string::npos)
        << "message lacks \"" << part << "\":\n  " << message;
}

// The error for a file x.yaml with this text (and overrides).
std::string file_error(const std::string& text, const std::vector<std::string>& overrides = {}) {
  TempDir dir;
  const std::string path = dir.write("x.yaml", text);
  return error_of([&] { vdm::load_config(path, overrides); });
}

const char* kFull = R"(
name: cifar_sigmoid
seed: 7
data:
  format: imagefolder
  path: /data/cifar10
  resolution: 64
  split: trainset
  eval_split: valset
  flip: false
  workers: 5
  on_error: fail
model: {preset: cifar10_vdm, channels: 128, dropout: 0.1, num_classes: 10}
schedule:
  name: learned
  gamma_min: -12.5
  gamma_max: 6
  shift: 0.5
  hidden: 256
  learn_endpoints: false
  minimise_variance: true
objective:
  name: weighted
  timesteps: 0
  weighting: {name: sigmoid, bias: 2.5, k: 4, gamma: 0.5, p_mean: -1, p_std: 1.5, sigma_data: 0.25}
  proposal:
    name: adaptive
    time_sampling: stratified
    p_mean: -0.5
    p_std: 1.1
    bins: 32
    lambda_min: -5
    lambda_max: 12
    ema: 0.95
    uniform_mix: 0.2
    adaptive_target: rms
  parameterisation: v
train:
  steps: 1e5
  batch_size: 128
  lr: 1e-3
  warmup_steps: 500
  lr_schedule: cosine
  grad_clip: 0
  ema_decay: 0.999
  grad_accum: 2
  threads: 4
  device: cuda
  log_every: 50
checkpoint: {every: 1000, keep_last: 2, keep_every: 10000}
eval:
  every: 5000
  num_samples: 1000
  sampler: heun
  steps: 64
  bpd: false
  fid: {enabled: true, features: /models/inception.pt}
  batch_size: 250
distributed: {bucket_mb: 50, first_bucket_mb: 0.5, timeout_s: 300}
slurm:
  nodes: 4
  tasks_per_node: 8
  gpus_per_node: 8
  cpus_per_task: 6
  time: 2-00:00:00
  partition: gpu
  account: proj42
  qos: high
  signal_lead_s: 120
  extra: [--exclusive, "--constraint=a100"]
  env: {NCCL_DEBUG: WARN, OMP_NUM_THREADS: "1"}
  launcher: mpirun
)";

}  // namespace

TEST(Config, Defaults) {
  const RunConfig c = vdm::parse_config("", "");
  EXPECT_EQ(c.name, "run");
  EXPECT_EQ(c.seed, 0u);
  EXPECT_EQ(c.train.data.format, "idx");
  EXPECT_EQ(c.train.data.resolution, 32);
  EXPECT_TRUE(c.train.loader.flip);
  EXPECT_EQ(c.train.schedule.name, "linear");
  EXPECT_DOUBLE_EQ(c.train.schedule.gamma_min, -13.3);
  EXPECT_EQ(c.train.objective.name, "vlb");
  EXPECT_EQ(c.train.objective.weighting.name, "elbo");
  EXPECT_EQ(c.train.objective.proposal.name, "schedule");
  EXPECT_EQ(c.train.objective.parameterisation, "eps");
  EXPECT_EQ(c.train.steps, 1000);
  EXPECT_DOUBLE_EQ(c.train.lr.lr, 2e-4);
  EXPECT_EQ(c.process.device, "cpu");
  EXPECT_EQ(c.train.keep_last, 3);
  EXPECT_FALSE(c.train.eval.fid);
  EXPECT_EQ(c.slurm.time, "01:00:00");
  EXPECT_EQ(c.slurm.launcher, "srun");
  EXPECT_TRUE(c.slurm.extra.empty());
  EXPECT_EQ(c.source, "");
  // Emitted from the struct, so defaults are visible in RUN/config.yaml.
  expect_contains(c.resolved_yaml, {"lr: 0.0002", "gamma_min: -13.3", "time: 01:00:00"});
}

TEST(Config, FullConfigParses) {
  TempDir dir;
  const std::string path = dir.write("full.yaml", kFull);
  const RunConfig c = vdm::load_config(path);
  EXPECT_EQ(c.source, path);
  EXPECT_EQ(c.name, "cifar_sigmoid");
  EXPECT_EQ(c.seed, 7u);
  EXPECT_EQ(c.train.data.format, "imagefolder");
  EXPECT_EQ(c.train.data.path, "/data/cifar10");
  EXPECT_EQ(c.train.data.resolution, 64);
  EXPECT_EQ(c.train.data.split, "trainset");
  EXPECT_EQ(c.train.eval_data.split, "valset");
  EXPECT_FALSE(c.train.loader.flip);
  EXPECT_EQ(c.train.loader.workers, 5);
  EXPECT_EQ(c.train.data.on_error, "fail");
  EXPECT_EQ(c.train.model.preset, "cifar10_vdm");
  EXPECT_EQ(c.train.model.vdm.channels(), 128);
  EXPECT_DOUBLE_EQ(c.train.model.vdm.dropout(), 0.1);
  EXPECT_EQ(vdm::num_classes(c.train.model), 10);
  EXPECT_EQ(c.train.schedule.name, "learned");
  EXPECT_DOUBLE_EQ(c.train.schedule.gamma_min, -12.5);
  EXPECT_DOUBLE_EQ(c.train.schedule.gamma_max, 6.0);
  EXPECT_DOUBLE_EQ(c.train.schedule.shift, 0.5);
  EXPECT_EQ(c.train.schedule.hidden, 256);
  EXPECT_FALSE(c.train.schedule.learn_endpoints);
  EXPECT_TRUE(c.train.schedule.minimise_variance);
  const auto& o = c.train.objective;
  EXPECT_EQ(o.name, "weighted");
  EXPECT_EQ(o.timesteps, 0);
  EXPECT_EQ(o.weighting.name, "sigmoid");
  EXPECT_DOUBLE_EQ(o.weighting.bias, 2.5);
  EXPECT_DOUBLE_EQ(o.weighting.k, 4.0);
  EXPECT_DOUBLE_EQ(o.weighting.gamma, 0.5);
  EXPECT_DOUBLE_EQ(o.weighting.p_mean, -1.0);
  EXPECT_DOUBLE_EQ(o.weighting.p_std, 1.5);
  EXPECT_DOUBLE_EQ(o.weighting.sigma_data, 0.25);
  EXPECT_EQ(o.proposal.name, "adaptive");
  EXPECT_EQ(o.proposal.time_sampling, "stratified");
  EXPECT_DOUBLE_EQ(o.proposal.p_mean, -0.5);
  EXPECT_DOUBLE_EQ(o.proposal.p_std, 1.1);
  EXPECT_EQ(o.proposal.bins, 32);
  EXPECT_DOUBLE_EQ(o.proposal.lambda_min, -5.0);
  EXPECT_EQ(o.proposal.adaptive_target, "rms");
  EXPECT_DOUBLE_EQ(o.proposal.lambda_max, 12.0);
  EXPECT_DOUBLE_EQ(o.proposal.ema, 0.95);
  EXPECT_DOUBLE_EQ(o.proposal.uniform_mix, 0.2);
  EXPECT_EQ(o.parameterisation, "v");
  EXPECT_EQ(c.train.steps, 100000);
  EXPECT_EQ(c.train.loader.batch_size, 128);
  EXPECT_DOUBLE_EQ(c.train.lr.lr, 1e-3);
  EXPECT_EQ(c.train.lr.warmup_steps, 500);
  EXPECT_EQ(c.train.lr.shape, "cosine");
  EXPECT_DOUBLE_EQ(c.train.grad_clip, 0.0);
  EXPECT_DOUBLE_EQ(c.train.ema.decay, 0.999);
  EXPECT_EQ(c.train.grad_accum, 2);
  EXPECT_EQ(c.train.threads, 4);
  EXPECT_EQ(c.process.device, "cuda");
  EXPECT_EQ(c.train.log_every, 50);
  EXPECT_EQ(c.train.checkpoint_every, 1000);
  EXPECT_EQ(c.train.keep_last, 2);
  EXPECT_EQ(c.train.keep_every, 10000);
  EXPECT_EQ(c.train.eval_every, 5000);
  EXPECT_EQ(c.train.eval.sample_count, 1000);
  EXPECT_EQ(c.train.eval.sampler.sampler, "heun");
  EXPECT_EQ(c.train.eval.sampler.steps, 64);
  EXPECT_FALSE(c.train.eval.bpd);
  EXPECT_TRUE(c.train.eval.fid);
  EXPECT_EQ(c.train.eval.fid_features, "/models/inception.pt");
  EXPECT_EQ(c.train.eval.batch_size, 250);
  EXPECT_DOUBLE_EQ(c.train.reducer.bucket_mb, 50.0);
  EXPECT_DOUBLE_EQ(c.train.reducer.first_bucket_mb, 0.5);
  EXPECT_DOUBLE_EQ(c.train.timeout_s, 300.0);
  EXPECT_EQ(c.slurm.nodes, 4);
  EXPECT_EQ(c.slurm.tasks_per_node, 8);
  EXPECT_EQ(c.slurm.gpus_per_node, 8);
  EXPECT_EQ(c.slurm.cpus_per_task, 6);
  EXPECT_EQ(c.slurm.time, "2-00:00:00");
  EXPECT_EQ(c.slurm.partition, "gpu");
  EXPECT_EQ(c.slurm.account, "proj42");
  EXPECT_EQ(c.slurm.qos, "high");
  EXPECT_EQ(c.slurm.signal_lead_s, 120);
  EXPECT_EQ(c.slurm.extra, (std::vector<std::string>{"--exclusive", "--constraint=a100"}));
  EXPECT_EQ(c.slurm.env.at("NCCL_DEBUG"), "WARN");
  EXPECT_EQ(c.slurm.env.at("OMP_NUM_THREADS"), "1");
  EXPECT_EQ(c.slurm.launcher, "mpirun");
  EXPECT_EQ(c.origins.at("data.path"), path + ":5");
}

TEST(Config, ShorthandSections) {
  const RunConfig c = vdm::parse_config(
      "objective: {name: weighted, weighting: edm, proposal: edm_lognormal}\neval: {fid: false}\n", "s.yaml");
  EXPECT_EQ(c.train.objective.weighting.name, "edm");
  EXPECT_EQ(c.train.objective.proposal.name, "edm_lognormal");
  EXPECT_FALSE(c.train.eval.fid);
}

TEST(Config, OverridesApply) {
  const std::string text = R"(
objective:
  name: weighted
  weighting: {name: sigmoid, bias: 3}
)";
  const RunConfig c = vdm::parse_config(
      text, "o.yaml",
      {"objective.weighting.bias=2", "train.steps=5", "slurm.extra=[a, b]", "slurm.env={A: x}",
       "eval.fid.enabled=true", "eval.fid.features=/f.pt", "name=swept"});
  EXPECT_EQ(c.train.objective.weighting.name, "sigmoid");
  EXPECT_DOUBLE_EQ(c.train.objective.weighting.bias, 2.0);
  EXPECT_EQ(c.train.steps, 5);
  EXPECT_EQ(c.slurm.extra, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(c.slurm.env.at("A"), "x");
  EXPECT_TRUE(c.train.eval.fid);
  EXPECT_EQ(c.train.eval.fid_features, "/f.pt");
  EXPECT_EQ(c.name, "swept");
  EXPECT_EQ(c.origins.at("train.steps"), "command-line override 'train.steps=5'");

  // A whole section replaced: the bias from the file goes back to its default.
  const RunConfig edm = vdm::parse_config(text, "o.yaml", {"objective.weighting=edm"});
  EXPECT_EQ(edm.train.objective.weighting.name, "edm");
  EXPECT_DOUBLE_EQ(edm.train.objective.weighting.bias, 0.0);

  // A key set inside a section the file wrote as shorthand keeps the shorthand's name.
  const RunConfig mixed =
      vdm::parse_config("objective: {weighting: sigmoid}\n", "m.yaml",
                        {"objective.weighting.bias=-1", "objective.proposal.bins=8"});
  EXPECT_EQ(mixed.train.objective.weighting.name, "sigmoid");
  EXPECT_DOUBLE_EQ(mixed.train.objective.weighting.bias, -1.0);
  EXPECT_EQ(mixed.train.objective.proposal.bins, 8);
}

TEST(Config, UnknownKeyInFile) {
  const std::string msg = file_error(R"(
name: typo
objective:
  name: weighted
  timesteps: 0
  weighting:
    bias: 1
    nmae: sigmoid
)");
  expect_contains(msg, {"x.yaml:7: objective.weighting.nmae: unknown key; did you mean 'name'?",
                        "(valid keys: name, bias, k, p2_k, gamma, p_mean, p_std, sigma_data)"});
}

TEST(Config, UnknownSectionAndPrefixSuggestion) {
  expect_contains(
      file_error("seed: 1\ntrian:\n  steps: 3\n"),
      {"x.yaml:2: trian: unknown key; did you mean 'train'?", "valid keys: name, seed"});
  expect_contains(file_error("train:\n  lr: 0.1\n  batch: 3\n"),
                  {"x.yaml:3: train.batch: unknown key; did you mean 'batch_size'?"});
}

TEST(Config, UnknownKeyFromOverride) {
  expect_contains(file_error("name: a\n", {"train.setps=5"}),
                  {"command-line override 'train.setps=5': train.setps: unknown key; "
                   "did you mean 'steps'?"});
  expect_contains(file_error("name: a\n", {"trian.steps=5"}),
                  {"command-line override 'trian.steps=5': trian: unknown key; "
                   "did you mean 'train'?"});
}

TEST(Config, MalformedOverrides) {
  expect_contains(file_error("name: a\n", {"train.steps"}),
                  {"command-line override 'train.steps'", "key.path=value"});
  expect_contains(file_error("name: a\n", {"train..steps=1"}),
                  {"'train..steps'", "not a key path"});
  expect_contains(file_error("train:\n  steps: 3\n", {"train.steps.x=1"}),
                  {"command-line override 'train.steps.x=1': train.steps is a value, not a "
                   "section, so it has no key 'x'"});
}

TEST(Config, WrongTypes) {
  expect_contains(file_error("data:\n  resolution: abc\n"),
                  {"x.yaml:2: data.resolution: expected an integer, got 'abc'"});
  expect_contains(file_error("data:\n  flip: maybe\n"),
                  {"x.yaml:2: data.flip: expected true or false, got 'maybe'"});
  expect_contains(file_error("train:\n  lr: [1, 2]\n"),
                  {"x.yaml:2: train.lr: expected a number, got a list"});
  expect_contains(file_error("name: ok\ndata: 3\n"),
                  {"x.yaml:2: data: expected a map of keys, got '3'"});
  expect_contains(file_error("name: {a: 1}\n"), {"x.yaml:1: name: expected a string, got a map"});
  expect_contains(file_error("slurm:\n  extra: --exclusive\n"),
                  {"x.yaml:2: slurm.extra: expected a list of strings like [a, b]"});
  expect_contains(file_error("slurm:\n  extra:\n    - ok\n    - {a: 1}\n"),
                  {"x.yaml:4: slurm.extra[1]: expected a string, got a map"});
  expect_contains(file_error("- a\n- b\n"), {"x.yaml:1: top level: expected a map of sections"});
}

TEST(Config, WrongTypeFromOverride) {
  const std::string msg = file_error("name: a\n", {"objective.weighting.bias=abc"});
  EXPECT_EQ(msg,
            "command-line override 'objective.weighting.bias=abc': objective.weighting.bias: "
            "expected a number, got 'abc'");
}

TEST(Config, OutOfRangeValues) {
  struct Case {
    std::string yaml, expected;
  };
  const std::vector<Case> cases = {
      {"name: a\ndata:\n  resolution: 0\n",
       "x.yaml:3: data.resolution: must be in 1..1024, got '0'"},
      {"data:\n  resolution: 2048\n", "x.yaml:2: data.resolution: must be in 1..1024"},
      {"train:\n  steps: 0\n", "x.yaml:2: train.steps: must be >= 1, got '0'"},
      {"train:\n  batch_size: -4\n", "x.yaml:2: train.batch_size: must be >= 1"},
      {"train:\n  lr: 0\n", "x.yaml:2: train.lr: must be > 0"},
      {"train:\n  ema_decay: 1.0\n", "x.yaml:2: train.ema_decay: must be in [0, 1), got '1.0'"},
      {"objective:\n  timesteps: -1\n", "x.yaml:2: objective.timesteps: must be >= 0"},
      {"checkpoint:\n  keep_last: 0\n", "x.yaml:2: checkpoint.keep_last: must be >= 1"},
      {"schedule:\n  gamma_min: 1\n  gamma_max: -1\n",
       "x.yaml:3: schedule.gamma_max: must be greater than gamma_min (1.0), got '-1'"},
      {"schedule:\n  gamma_min: 6\n",
       "x.yaml:2: schedule.gamma_min: must be less than gamma_max (5.0), got '6'"},
      {"slurm:\n  time: soon\n", "x.yaml:2: slurm.time: must be a Slurm time limit"},
      {"eval:\n  fid: {enabled: true}\n",
       "x.yaml:2: eval.fid.enabled: FID needs eval.fid.features"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.yaml);
    expect_contains(file_error(c.yaml), {c.expected});
  }
}

TEST(Config, UnknownEnumValues) {
  expect_contains(file_error("schedule:\n  name: cosin\n"),
                  {"x.yaml:2: schedule.name: unknown value 'cosin'; did you mean 'cosine'?",
                   "(choices: linear, cosine, learned)"});
  expect_contains(file_error("objective:\n  weighting: sigmod\n"),
                  {"x.yaml:2: objective.weighting.name: unknown value 'sigmod'; did you mean "
                   "'sigmoid'?",
                   "elbo, sigmoid, edm, edm_monotonic, iddpm, v_mse, min_snr, p2, flow_matching"});
  expect_contains(
      file_error("objective:\n  name: elbo\n"),
      {"x.yaml:2: objective.name: unknown value 'elbo'", "(choices: vlb, eps_mse, weighted)"});
  expect_contains(file_error("objective:\n  parameterisation: f\n"),
                  {"objective.parameterisation: unknown value 'f'", "(choices: eps, x, v, F)"});
  expect_contains(file_error("objective:\n  proposal: {time_sampling: random}\n"),
                  {"x.yaml:2: objective.proposal.time_sampling", "iid, antithetic, stratified"});
  expect_contains(file_error("data: {format: png}\n"),
                  {"x.yaml:1: data.format: unknown value 'png'", "idx, imagefolder, packed"});
  expect_contains(
      file_error("train:\n  device: cdua\n"),
      {"train.device: unknown value 'cdua'; did you mean 'cuda'?", "(choices: cpu, cuda)"});
}

TEST(Config, MissingFile) {
  TempDir dir;
  const std::string path = (dir.path / "nope.yaml").string();
  expect_contains(error_of([&] { vdm::load_config(path); }),
                  {path + ": config file not found", "check the path"});
}

TEST(Config, InvalidYaml) {
  // yaml-cpp reports an unclosed bracket where it notices it: the next line.
  expect_contains(file_error("name: a\ndata:\n  path: [unclosed\n  flip: true\nseed: 1\n"),
                  {"x.yaml:4: invalid YAML", "end of sequence flow not found"});
  expect_contains(file_error("name: a\ntrain:\n  steps: 1\n   lr: 2\n"),
                  {"x.yaml:4: invalid YAML", "fix the syntax"});
  expect_contains(file_error("name: a\ntrain: steps: 3\n"), {"x.yaml:2: invalid YAML"});
  expect_contains(file_error("name: a\n", {"slurm.extra=[a"}),
                  {"command-line override 'slurm.extra=[a'", "not valid YAML"});
}

TEST(Config, ResolvedYamlRoundTrips) {
  TempDir dir;
  const RunConfig a = vdm::load_config(dir.write("full.yaml", kFull),
                                       {"objective.weighting.bias=0.1", "slurm.partition=null",
                                        "slurm.qos='yes'", "data.split='123'"});
  const RunConfig b = vdm::parse_config(a.resolved_yaml, "config.yaml");
  EXPECT_EQ(b.resolved_yaml, a.resolved_yaml);
  EXPECT_DOUBLE_EQ(b.train.objective.weighting.bias, 0.1);
  EXPECT_DOUBLE_EQ(b.train.lr.lr, a.train.lr.lr);
  EXPECT_DOUBLE_EQ(b.train.model.vdm.dropout(), a.train.model.vdm.dropout());
  EXPECT_EQ(b.slurm.partition, "");
  EXPECT_EQ(b.slurm.qos, "yes");
  EXPECT_EQ(b.train.data.split, "123");
  EXPECT_EQ(b.slurm.extra, a.slurm.extra);
  EXPECT_EQ(b.slurm.env, a.slurm.env);
  EXPECT_EQ(b.slurm.time, "2-00:00:00");
  EXPECT_EQ(b.train.eval.fid_features, a.train.eval.fid_features);

  const RunConfig d = vdm::parse_config("", "");
  EXPECT_EQ(vdm::parse_config(d.resolved_yaml, "config.yaml").resolved_yaml, d.resolved_yaml);
}

TEST(Config, CheckPaths) {
  TempDir dir;
  const std::string missing = (dir.path / "no-such-data").string();
  const RunConfig bad =
      vdm::load_config(dir.write("c.yaml", "name: a\ndata:\n  path: " + missing + "\n"));
  expect_contains(error_of([&] { vdm::check_paths(bad); }),
                  {"c.yaml:3: data.path: '" + missing + "' does not exist", "data.path=PATH"});

  const RunConfig unset = vdm::parse_config("name: a\n", "u.yaml");
  expect_contains(error_of([&] { vdm::check_paths(unset); }), {"u.yaml: data.path: not set"});

  const RunConfig good = vdm::parse_config("data: {path: " + dir.path.string() + "}\n", "g.yaml",
                                           {"eval.fid={enabled: true, features: " + missing + "}"});
  expect_contains(error_of([&] { vdm::check_paths(good); }),
                  {"command-line override 'eval.fid={enabled: true, features: ",
                   "eval.fid.features: '" + missing + "' does not exist"});

  // The splits: an idx folder with the training files only has no held-out split, which the
  // run needs for bits/dim unless evaluation is off (issue 15).
  for (const char* f : {"train-images-idx3-ubyte", "train-labels-idx1-ubyte"}) dir.write(f, "");
  const RunConfig no_test = vdm::parse_config("data: {path: " + dir.path.string() + "}\n", "f.yaml");
  expect_contains(error_of([&] { vdm::check_paths(no_test); }),
                  {"f.yaml: data.eval_split:", "t10k-images-idx3-ubyte", "eval.bpd=false"});
  EXPECT_NO_THROW(vdm::check_paths(vdm::parse_config("data: {path: " + dir.path.string() + "}\n", "f.yaml",
                                                     {"eval.final=false"})));
  for (const char* f : {"t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"}) dir.write(f, "");
  const RunConfig fine = vdm::parse_config("data: {path: " + dir.path.string() + "}\n", "f.yaml");
  EXPECT_NO_THROW(vdm::check_paths(fine));
}

// Rules across keys that the objectives own (objectives/objective.h: check_options) are applied
// while the config is read, so `vdm train` refuses them before MPI starts, naming where the
// offending key came from.
TEST(Config, ObjectiveCombinationRulesNameTheKey) {
  expect_contains(error_of([] {
                    vdm::parse_config("", "q.yaml", {"objective.name=vlb", "objective.proposal.name=adaptive"});
                  }),
                  {"command-line override 'objective.proposal.name=adaptive'", "objective.proposal.name:",
                   "must be 'schedule'", "objective.name=weighted"});
  expect_contains(file_error("objective:\n  name: eps_mse\n  proposal:\n    name: edm_lognormal\n"),
                  {"x.yaml:4: objective.proposal.name:", "objective eps_mse"});
  EXPECT_NO_THROW(vdm::parse_config("", "q.yaml", {"objective.name=weighted", "objective.proposal.name=adaptive"}));
  // The weighted loss on a T-step grid would be a biased sum (issue 15): refused, naming the key.
  expect_contains(error_of([] {
                    vdm::parse_config("", "q.yaml", {"objective.name=weighted", "objective.timesteps=1000"});
                  }),
                  {"command-line override 'objective.timesteps=1000'", "objective.timesteps:",
                   "continuous-time integral", "objective.name=vlb"});
  EXPECT_NO_THROW(vdm::parse_config("", "q.yaml", {"objective.name=vlb", "objective.timesteps=1000"}));
  // Pixels are 8-bit everywhere (encoding, decoder, samplers): the decoder's bin count is no key
  // any more; older config.yaml files that say 256 still read.
  expect_contains(error_of([] { vdm::parse_config("", "q.yaml", {"objective.vocab_size=16"}); }),
                  {"objective.vocab_size: pixels are 8-bit everywhere", "got '16'"});
  const RunConfig old = vdm::parse_config("", "q.yaml", {"objective.vocab_size=256"});
  EXPECT_EQ(old.resolved_yaml.find("vocab_size"), std::string::npos);
  // A proposal's lambda range must lie inside the schedule's (issue 15); unset, it is the
  // schedule's, and it stays unset in the resolved config.
  expect_contains(file_error("schedule: {gamma_min: -10, gamma_max: 6}\nobjective:\n  name: weighted\n"
                             "  proposal: {name: adaptive, lambda_min: -8}\n"),
                  {"x.yaml:4: objective.proposal.lambda_min:", "outside the schedule's lambda range [-6, 10]"});
  const RunConfig unset = vdm::parse_config("", "q.yaml", {"objective.name=weighted", "objective.proposal.name=adaptive"});
  EXPECT_TRUE(std::isnan(unset.train.objective.proposal.lambda_min));
  EXPECT_EQ(unset.resolved_yaml.find("lambda_min"), std::string::npos);
  // Configs written before issue 15 list the old default range [-15, 15]: read as unset.
  const RunConfig legacy = vdm::parse_config("objective:\n  name: weighted\n  proposal: {name: adaptive, "
                                             "lambda_min: -15.0, lambda_max: 15.0}\n", "old.yaml");
  EXPECT_TRUE(std::isnan(legacy.train.objective.proposal.lambda_min));
  expect_contains(file_error("objective:\n  name: weighted\n  proposal: {name: adaptive, adaptive_target: rms, "
                             "lambda_min: -15.0, lambda_max: 15.0}\n"),
                  {"objective.proposal.lambda_min:", "outside the schedule's lambda range"});
  expect_contains(file_error("objective:\n  name: weighted\n  proposal: {name: adaptive, lambda_max: 20}\n"),
                  {"objective.proposal.lambda_max:", "outside the schedule's lambda range"});
  // Flow matching is v_mse's weighting under the rectified-flow density (issue 15).
  expect_contains(error_of([] {
                    vdm::parse_config("", "q.yaml", {"objective.name=weighted", "objective.weighting.name=flow_matching"});
                  }),
                  {"objective.proposal.name:", "objective.proposal.name=rectified_flow"});
  EXPECT_NO_THROW(vdm::parse_config("", "q.yaml", {"objective.name=weighted", "objective.weighting.name=flow_matching",
                                                   "objective.proposal.name=rectified_flow"}));
}

// Every `key.path=value` hint that a message or a doc gives names a key the config accepts:
// messages that send users to keys that do not exist are how the schema and the code drift.
TEST(Config, EveryKeyHintInMessagesAndDocsExists) {
  const RunConfig defaults = vdm::parse_config("", "defaults");
  std::set<std::string> keys;
  std::function<void(const YAML::Node&, const std::string&)> walk = [&](const YAML::Node& n, const std::string& path) {
    if (!path.empty()) keys.insert(path);
    if (n.IsMap())
      for (const auto& kv : n) walk(kv.second, path.empty() ? kv.first.Scalar() : path + "." + kv.first.Scalar());
  };
  walk(YAML::Load(defaults.resolved_yaml), "");
  const std::set<std::string> sections{"data", "model", "schedule", "objective", "train",
                                       "checkpoint", "eval", "distributed", "slurm"};
  const std::regex hint(R"(\b([a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+)=)");
  int checked = 0;
  for (const char* folder : {"objectives", "models", "data", "distributed", "training", "evaluation", "launch", "docs",
                             "configs"}) {
    for (const auto& entry : fs::recursive_directory_iterator(fs::path(VDM_SOURCE_DIR) / folder)) {
      const auto ext = entry.path().extension();
      if (ext != ".cpp" && ext != ".h" && ext != ".md" && ext != ".yaml") continue;
      std::ifstream in(entry.path());
      const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      for (std::sregex_iterator it(text.begin(), text.end(), hint), end; it != end; ++it) {
        const std::string key = (*it)[1];
        const std::string section = key.substr(0, key.find('.'));
        if (!sections.count(section)) continue;
        // slurm.env.NAME and the like: maps whose entries are the user's.
        const bool user_map = key.rfind("slurm.env.", 0) == 0;
        EXPECT_TRUE(user_map || keys.count(key)) << entry.path().string() << " mentions " << key
                                                 << "=..., which is not a config key";
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 20);
}

// model: a preset gives every architecture option a default; any key overrides it; `arch` picks
// the network and only its keys are valid.
TEST(Config, ArchitecturesFromTheConfig) {
  const RunConfig q = vdm::parse_config("", "q.yaml", {"model.preset=quickstart", "data.resolution=28"});
  EXPECT_EQ(q.train.model.arch, "adm");
  EXPECT_EQ(q.train.model.adm.base_channels(), 32);
  EXPECT_EQ(q.train.model.adm.channel_mult(), (std::vector<int64_t>{1, 2, 2}));
  EXPECT_EQ(q.train.model.adm.attention_resolutions(), (std::vector<int64_t>{7}));
  EXPECT_EQ(q.train.model.adm.in_channels(), 1);  // idx data: grayscale

  const RunConfig a = vdm::parse_config(
      "", "a.yaml",
      {"model.arch=adm", "model.channel_mult=[1,2,4]", "model.attention_resolutions=[4]", "model.num_res_blocks=2",
       "model.scale_shift=false", "model.head_channels=4", "data.resolution=16"});
  EXPECT_EQ(a.train.model.adm.channel_mult(), (std::vector<int64_t>{1, 2, 4}));
  EXPECT_EQ(a.train.model.adm.attention_resolutions(), (std::vector<int64_t>{4}));
  EXPECT_EQ(a.train.model.adm.num_res_blocks(), 2);
  EXPECT_FALSE(a.train.model.adm.scale_shift());
  EXPECT_EQ(a.train.model.adm.head_channels(), 4);
  EXPECT_EQ(a.train.model.adm.base_channels(), 8);  // the tiny preset's width, not overridden
  const RunConfig back = vdm::parse_config(a.resolved_yaml, "config.yaml");
  EXPECT_EQ(back.resolved_yaml, a.resolved_yaml);
  EXPECT_EQ(back.train.model.adm.channel_mult(), a.train.model.adm.channel_mult());

  const RunConfig v = vdm::parse_config("", "v.yaml", {"model.arch=vdm", "model.num_blocks=8", "model.fourier_max=-1"});
  EXPECT_EQ(v.train.model.arch, "vdm");
  EXPECT_EQ(v.train.model.vdm.num_blocks(), 8);
  EXPECT_EQ(v.train.model.vdm.fourier_max(), -1);

  // Keys of the other architecture, and architectures that cannot be built, are refused by key.
  expect_contains(error_of([] { vdm::parse_config("", "x.yaml", {"model.num_blocks=8"}); }),
                  {"model.num_blocks: unknown key"});
  expect_contains(error_of([] {
                    vdm::parse_config("", "x.yaml", {"data.resolution=16", "model.attention_resolutions=[5]"});
                  }),
                  {"command-line override 'model.attention_resolutions=[5]'", "model.attention_resolutions:",
                   "5 px is not the resolution of a level (levels: 16, 8 px)"});
  expect_contains(file_error("data: {resolution: 28}\nmodel: {preset: imagenet64_adm}\n"),
                  {"model.channel_mult:", "multiple of 8", "data.resolution=28"});
  // A given dropout must be a probability; leaving it out keeps the preset's.
  expect_contains(error_of([] { vdm::parse_config("", "x.yaml", {"model.dropout=-0.5"}); }),
                  {"model.dropout: must be in [0, 1), got '-0.5'"});
  // The middle block always attends: its heads must divide its width too.
  expect_contains(error_of([] {
                    vdm::parse_config("", "x.yaml", {"data.resolution=16", "model.attention_resolutions=[]",
                                                     "model.num_heads=3"});
                  }),
                  {"model.num_heads: 3 heads do not divide the 16 channels at the middle block"});
  expect_contains(error_of([] { vdm::parse_config("", "x.yaml", {"model.channel_mult=[1,x]"}); }),
                  {"model.channel_mult[1]: expected an integer"});
}
