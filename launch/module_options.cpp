// RunConfig -> module options (see module_options.h).
#include "launch/module_options.h"

namespace vdm {

int64_t data_channels(const DataConfig& data) { return data.format == "idx" ? 1 : 3; }

ModelOptions model_options(const RunConfig& cfg) {
  ModelOptions o;
  o.preset = cfg.model.preset;
  o.in_channels = data_channels(cfg.data);
  o.resolution = cfg.data.resolution;
  o.num_classes = cfg.model.num_classes;
  o.channels = cfg.model.channels;
  o.dropout = cfg.model.dropout;
  return o;
}

DataOptions data_options(const RunConfig& cfg, bool held_out) {
  DataOptions d;
  d.format = cfg.data.format;
  d.path = cfg.data.path;
  d.resolution = cfg.data.resolution;
  d.split = held_out ? cfg.data.eval_split : cfg.data.split;
  d.channels = data_channels(cfg.data);
  d.on_error = cfg.data.on_error;
  return d;
}

EvaluatorOptions evaluator_options(const RunConfig& cfg, const std::string& run_dir) {
  const EvalConfig& e = cfg.eval;
  EvaluatorOptions o;
  o.seed = cfg.seed;
  o.run_dir = run_dir;
  o.data = data_options(cfg, false);
  o.eval_data = data_options(cfg, true);
  o.num_classes = cfg.model.num_classes;
  o.sample_count = e.num_samples;
  o.sampler.sampler = e.sampler;
  o.sampler.steps = e.steps;
  o.batch_size = e.batch_size;
  o.bpd = e.bpd;
  o.bpd_options.batch_size = e.batch_size;
  o.bpd_options.max_samples = e.bpd_samples;
  o.bpd_options.seed = cfg.seed;
  o.fid = e.fid;
  o.fid_features = e.fid_features;
  o.fid_samples = e.fid_samples;
  o.fid_reference = e.fid_reference;
  return o;
}

}  // namespace vdm
