// The evaluation every `vdm train` run ends with, and `vdm eval` repeats: a sample grid, FID of
// generated samples against the held-out split (any TorchScript feature net, or the built-in
// classifier trained on first use), and test-set bits/dim. Collective: every rank takes part.
#pragma once

#include <c10/core/Device.h>
#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>

#include "data/dataset.h"
#include "distributed/communicator.h"
#include "evaluation/bpd_evaluator.h"
#include "evaluation/sample_generator.h"
#include "models/denoiser_net.h"
#include "objectives/objective.h"

namespace vdm {

class Watchdog;

struct EvaluatorOptions {
  uint64_t seed = 0;
  std::string run_dir;     // samples/, fid_features.pt and fid_reference.npz go here
  DataOptions data;        // training split: what the built-in feature net learns from
  DataOptions eval_data;   // held-out split: bits/dim and FID reference
  int64_t num_classes = 0; // > 0: class-conditional (labels cycle through the classes)
  bool null_label_trained = false;  // train.label_dropout > 0: -log p(x) under the null label means something
  int64_t sample_count = 64;  // images in the grid (0: none)
  SamplingOptions sampler;    // seed and null label are set here
  int64_t batch_size = 64;
  bool bpd = true;
  BpdOptions bpd_options;
  bool fid = false;
  std::string fid_features;   // TorchScript file, or "builtin": RUN/fid_features.pt, trained once
  int64_t fid_samples = 1000;
  std::string fid_reference;  // .npz stats; "": RUN/fid_reference.npz, from eval_data, made once
};

struct EvaluationContext {
  int rank = 0, world = 1;
  c10::Device device{c10::kCPU};
  Communicator* comm = nullptr;  // CPU (MPI) communicator; every rank calls the same collectives
  Watchdog* watchdog = nullptr;  // may be null
};

// Evaluates `model` as it is (the caller puts it in eval mode with the weights it wants judged)
// and returns the eval.jsonl record for `step`; it is complete on rank 0 only.
nlohmann::json evaluate_model(const EvaluatorOptions& options, const EvaluationContext& context,
                              const DenoiserNet& model, ObjectiveImpl& objective, int64_t step);

}  // namespace vdm
