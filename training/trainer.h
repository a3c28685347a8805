// The training loop (docs/design.md §2, §6): data -> objective -> backward with overlapped
// gradient all-reduce -> clip -> AdamW -> EMA, with metrics, atomic checkpoints, exact resume,
// agreed preemption and a NaN/Inf guard. It takes plain options; launch/ maps the YAML onto them.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "data/dataset.h"
#include "data/loader.h"
#include "distributed/gradient_reducer.h"
#include "models/ema.h"
#include "models/model_presets.h"
#include "objectives/objective.h"
#include "training/checkpoint_store.h"
#include "training/evaluator.h"
#include "training/lr_schedule.h"

namespace vdm {

class ProcessContext;

struct TrainerOptions {
  uint64_t seed = 0;
  std::string run_dir;      // metrics.jsonl, eval.jsonl, checkpoints/, samples/ go here
  std::string config_text;  // the resolved config; stored in every checkpoint as config.yaml

  ModelOptions model;
  ScheduleOptions schedule;
  ObjectiveOptions objective;
  DataOptions data;        // training split
  // Held-out split for bits/dim and FID; "test" unless the config names one (never the training
  // split by default: evaluating there would report a fit, not a likelihood).
  DataOptions eval_data = [] {
    DataOptions d;
    d.split = "test";
    return d;
  }();
  LoaderOptions loader;    // batch_size is per rank and micro-batch

  int64_t steps = 1000;    // optimiser steps
  int64_t grad_accum = 1;  // micro-batches per step (global batch = batch x accum x world)
  LrScheduleOptions lr;    // total_steps is taken from steps
  double grad_clip = 1.0;  // max global gradient norm; 0: off
  double weight_decay = 0.0;
  double adam_beta1 = 0.9, adam_beta2 = 0.99, adam_eps = 1e-8;
  EmaOptions ema;
  int64_t threads = 1;       // torch intra-op threads
  bool bf16 = false;         // the network's forward under bf16 autocast (CPU or CUDA)
  bool channels_last = false;  // 4-d weights and the network's input in NHWC memory format
  bool fused_optimizer = true;  // AdamW, clipping and EMA on flat buffers (training/fused_optimizer.h)
  double peak_tflops = 0;       // per rank, for MFU; 0: the device's (CUDA) or measured (CPU)
  double label_dropout = 0.0;  // class-conditional: share of examples on the null label
  int64_t max_nonfinite_steps = 10;  // K non-finite steps in a row: checkpoint and stop
  int64_t log_every = 10;

  int64_t checkpoint_every = 0;  // 0: only at the end and on preemption
  int64_t keep_last = 3, keep_every = 0;
  bool checkpoint_async = true;  // the step waits only for a host copy; written in the background
  std::string resume = "auto";   // auto | none | path to a checkpoint folder

  int64_t eval_every = 0;  // 0: no periodic evaluation
  bool eval_final = true;  // evaluate once more after the last step
  // Grid, FID and bits/dim. run_dir, seed, data, eval_data and num_classes are filled in from
  // the options above.
  EvaluatorOptions eval;

  GradientReducerOptions reducer;
  double timeout_s = 600;  // collective watchdog

  // Called (on every rank) with the config.yaml text of the checkpoint about to be resumed;
  // throws when the current config cannot continue it. launch/ supplies it, since only
  // launch/ understands the config.
  std::function<void(const std::string& checkpoint_config)> check_resume;
};

enum class TrainOutcome { Completed, Preempted, Diverged };

struct TrainResult {
  TrainOutcome outcome = TrainOutcome::Completed;
  int64_t step = 0;
  int exit_code() const;  // kExitCompleted | kExitRequeue | kExitDiverged (stop_signal.h)
};

// Every rank constructs a Trainer and calls run() (both collective).
class Trainer {
 public:
  Trainer(TrainerOptions options, const ProcessContext& context);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;
  TrainResult run();
  struct State;  // opaque: defined in trainer.cpp

 private:
  std::unique_ptr<State> s_;
};

}  // namespace vdm
