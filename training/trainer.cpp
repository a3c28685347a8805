// The training loop behind `vdm train` (see trainer.h): set-up, then a short loop over the parts
// that do the work: TrainStep (one optimiser step), MetricsWindow (metrics.jsonl and the progress
// line), the preemption agreement, the Checkpointer and the evaluator. What a checkpoint holds
// and how it is encoded lives in train_state.cpp.
#include "training/trainer.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <stdexcept>

#include "distributed/process_context.h"
#include "distributed/watchdog.h"
#include "training/checkpointer.h"
#include "training/elapsed_time.h"
#include "training/metrics_log.h"
#include "training/metrics_window.h"
#include "training/tensorboard_log.h"
#include "training/preemption.h"
#include "training/progress_line.h"
#include "training/run_directory.h"
#include "training/stop_signal.h"
#include "training/train_step.h"
#include "training/train_state.h"
#include "training/trained_model.h"
#include "training/utilisation.h"
#ifdef VDM_WITH_NCCL
#include "distributed/nccl_communicator.h"
#endif

namespace vdm {

int TrainResult::exit_code() const {
  switch (outcome) {
    case TrainOutcome::Completed: return kExitCompleted;
    case TrainOutcome::Preempted: return kExitRequeue;
    case TrainOutcome::Diverged: return kExitDiverged;
  }
  return kExitFailed;
}

struct Trainer::State {
  TrainerOptions o;
  RunDirectory dir{""};
  int rank = 0, world = 1;
  c10::Device device{c10::kCPU};
  bool root = false;

  DenoiserNet model;
  Objective objective;
  Ema ema{nullptr};
  std::unique_ptr<torch::optim::AdamW> optimizer;
  GradientReducer::NamedParameters named;  // model then objective, as reducer and optimiser see them
  CommunicatorPtr cpu_comm, grad_comm;
  std::unique_ptr<GradientReducer> reducer;
  std::unique_ptr<Watchdog> watchdog;
  std::unique_ptr<Checkpointer> checkpointer;
  RngStreams rng;

  DatasetPtr train_set;
  std::unique_ptr<Loader> loader;
  std::unique_ptr<TrainStep> step;
  SamplerState sampler_state;
  TrainCounters counters;
  std::unique_ptr<MetricsLog> metrics, eval_log;
  double peak_flops = 0;  // all ranks' devices together, for MFU
  double stall_since_log_s = -1;  // checkpoint stalls since the last metrics record; < 0: none
};

Trainer::Trainer(TrainerOptions options, const ProcessContext& context) : s_(std::make_unique<State>()) {
  auto& s = *s_;
  s.o = std::move(options);
  auto& o = s.o;
  s.dir = RunDirectory(o.run_dir);
  s.rank = context.rank();
  s.world = context.world();
  s.device = context.device();
  s.root = context.is_root();
  if (o.steps < 1 || o.grad_accum < 1 || o.loader.batch_size < 1)
    throw std::invalid_argument("train.steps, train.grad_accum and train.batch_size must be at least 1");
  torch::set_num_threads(int(std::max<int64_t>(1, o.threads)));

  // Identical initial weights on every rank (the reducer broadcasts rank 0's anyway).
  torch::manual_seed(derive_seed(o.seed, 0, "init"));
  Network net = build_network(o.model, o.schedule, o.objective);
  s.model = net.model;
  s.objective = net.objective;
  if (s.root && o.eval_data.split == o.data.split)
    spdlog::warn("data.eval_split is the training split '{}': bits/dim and FID will be measured on the training "
                 "images", o.data.split);
  if (s.root && !s.objective->monotone())
    spdlog::info("objective: the weighting is not monotone in lambda, so the loss is no ELBO of noise-augmented "
                 "data (Kingma & Gao 2023) and no augmented ELBO is reported");
  s.model->to(s.device);
  s.objective->to(s.device);
  s.ema = Ema(*s.model, o.ema);
  for (const auto& p : s.model->named_parameters()) s.named.emplace_back("model." + p.key(), p.value());
  for (const auto& p : s.objective->named_parameters()) s.named.emplace_back("objective." + p.key(), p.value());
  std::vector<torch::Tensor> params;
  for (const auto& [name, tensor] : s.named) params.push_back(tensor);
  s.optimizer = std::make_unique<torch::optim::AdamW>(
      params, torch::optim::AdamWOptions(o.lr.lr).betas({o.adam_beta1, o.adam_beta2}).eps(o.adam_eps).weight_decay(o.weight_decay));
  o.lr.total_steps = o.steps;

  s.cpu_comm = make_host_communicator();
  s.grad_comm = s.cpu_comm;
  if (s.device.is_cuda()) {
#ifdef VDM_WITH_NCCL
    s.grad_comm = std::make_shared<NcclCommunicator>(*s.cpu_comm, int(s.device.index()));
#else
    throw std::runtime_error("train.device=cuda needs vdm built with NCCL (-DVDM_WITH_NCCL=ON)");
#endif
  }
  s.watchdog = std::make_unique<Watchdog>(o.timeout_s);
  CheckpointerOptions co;
  co.dir = s.dir.checkpoints();
  co.keep_last = o.keep_last;
  co.keep_every = o.keep_every;
  co.resume = o.resume;
  co.config_text = o.config_text;
  co.check_resume = o.check_resume;
  co.async = o.checkpoint_async;
  s.checkpointer = std::make_unique<Checkpointer>(std::move(co), *s.cpu_comm, *s.watchdog, s.rank, s.world);
  s.rng = RngStreams(o.seed, s.rank, s.device);

  s.train_set = open_dataset(o.data);
  if (s.root) {
    spdlog::info("{}", s.model->summary());
    spdlog::info("data: {} images of {}x{}x{} ({} classes), {} rank(s) x batch {} x accumulation {} = {} per step",
                 s.train_set->size(), s.train_set->channels(), s.train_set->resolution(),
                 s.train_set->resolution(), s.train_set->num_classes(), s.world, o.loader.batch_size,
                 o.grad_accum, s.world * o.loader.batch_size * o.grad_accum);
  }
}

Trainer::~Trainer() = default;

namespace {

TrainStateRefs state_refs(Trainer::State& s) {
  return {*s.model, *s.ema, *s.objective, *s.optimizer, s.rng, s.device};
}

void resume(Trainer::State& s) {
  const auto info = s.checkpointer->resume(state_refs(s));
  if (!info) return;
  s.counters = info->counters;
  s.sampler_state = info->sampler;
  if (info->world != s.world) {
    // Per-rank streams cannot be mapped onto a different number of ranks: start new ones that
    // depend on the step, so a second resume from this point repeats them.
    s.rng = RngStreams(derive_seed(s.o.seed, uint64_t(info->counters.step), "resized"), s.rank, s.device);
    if (s.root)
      spdlog::warn("resuming a {}-rank checkpoint on {} rank(s): the global sample stream continues, "
                   "per-rank noise streams restart", info->world, s.world);
  }
}

// Everything that depends on the resumed state: the logs (trimmed to the checkpoint's step),
// the weights' memory layout, the reducer (which broadcasts rank 0's restored weights), the
// loader (at the restored sampler position) and the step.
void start(Trainer::State& s) {
  const auto& o = s.o;
  resume(s);
  const int64_t keep = s.counters.step > 0 ? s.counters.step : -1;
  // One events file for both logs; a session start at keep + 1 drops older files' later points.
  const auto tb = std::make_shared<TensorBoardLog>(s.dir.tensorboard(), s.root, keep + 1);
  s.metrics = std::make_unique<MetricsLog>(s.dir.metrics(), s.root, keep, tb, "train");
  s.eval_log = std::make_unique<MetricsLog>(s.dir.eval_log(), s.root, keep, tb, "eval");
  // After resume, which restores the layout the checkpoint was saved in. Only the layout
  // changes: convolutions then run NHWC (what cuDNN's bf16 kernels and mkldnn prefer), and
  // every tensor made like a weight (gradients, AdamW's moments) follows it.
  if (o.channels_last) s.model->set_channels_last(true);
  GradientReducerOptions reducer_options = o.reducer;
  reducer_options.average = false;  // TrainStep applies the 1/world (fused: inside clipping or AdamW)
  s.reducer = std::make_unique<GradientReducer>(s.named, s.grad_comm, reducer_options);
  SamplerOptions so;
  so.dataset_size = s.train_set->size();
  so.rank = s.rank;
  so.world = s.world;
  so.seed = o.seed;
  DistributedSampler sampler(so);
  sampler.restore(s.sampler_state);
  s.loader = std::make_unique<Loader>(s.train_set, sampler, o.loader);
  TrainStepOptions to;
  to.grad_accum = o.grad_accum;
  to.grad_clip = o.grad_clip;
  to.bf16 = o.bf16;
  to.channels_last = o.channels_last;
  to.fused_optimizer = o.fused_optimizer;
  to.class_conditional = num_classes(o.model) > 0;
  to.label_dropout = o.label_dropout;
  to.num_classes = num_classes(o.model);
  to.seed = o.seed;
  to.rank = s.rank;
  to.world = s.world;
  s.step = std::make_unique<TrainStep>(
      to, TrainStepParts{s.model, s.objective, s.ema, *s.optimizer, *s.reducer, *s.cpu_comm, *s.grad_comm,
                         *s.watchdog, s.rng});
  s.model->train();
  // Every rank at once, so that ranks sharing a CPU measure the share each will get; MFU divides
  // by the sum over ranks (the same on every rank, so every rank writes the same record).
  auto peak = torch::tensor({device_peak_flops(s.device, o.bf16, o.peak_tflops)}, torch::kFloat64);
  {
    auto guard = s.watchdog->watch("all_reduce(peak FLOP/s)", s.counters.step);
    s.cpu_comm->all_reduce(peak, ReduceOp::Sum);
  }
  s.peak_flops = peak.item<double>();
  if (s.root && s.peak_flops > 0)
    spdlog::info("MFU is measured against {:.3g} TFLOP/s on {} rank(s) ({})", s.peak_flops / 1e12, s.world,
                 o.peak_tflops > 0 ? "train.peak_tflops" : s.device.is_cuda() ? "the device's dense peak"
                                                                              : "a 3x3 convolution on this rank's threads");
}

// With checkpoint.async the write goes on in the background; Checkpointer::finish() waits for
// it, and every way out of run() calls it first.
// The step's stall goes into the next metrics record as checkpoint_stall_ms.
void checkpoint(Trainer::State& s) {
  s.checkpointer->write(state_refs(s), TrainStateInfo{s.counters, s.sampler_state, s.world});
  s.stall_since_log_s = std::max(0.0, s.stall_since_log_s) + s.checkpointer->last_stall_s();
}

// With the EMA weights and dropout off; every rank takes part, rank 0 appends to eval.jsonl.
void evaluate(Trainer::State& s) {
  EvaluatorOptions eo = s.o.eval;
  eo.seed = s.o.seed;
  eo.run_dir = s.o.run_dir;
  eo.data = s.o.data;
  eo.eval_data = s.o.eval_data;
  eo.num_classes = num_classes(s.o.model);
  eo.null_label_trained = s.o.label_dropout > 0;
  s.model->eval();
  s.ema->swap_with(*s.model);
  auto record = evaluate_model(eo, {s.rank, s.world, s.device, s.cpu_comm.get(), s.watchdog.get()}, s.model,
                               *s.objective, s.counters.step);
  record["epoch"] = s.sampler_state.epoch;
  record["weights"] = "ema";
  s.eval_log->write(record);
  s.ema->swap_with(*s.model);
  s.model->train();
}

// Collective: the window's global means to metrics.jsonl and rank 0's progress line.
void log_metrics(Trainer::State& s, MetricsWindow& window, ProgressLine& progress, double lr, double seconds_per_step,
                 bool last) {
  auto rec = window.reduce(*s.cpu_comm, *s.watchdog,
                           {s.counters.step, s.sampler_state.epoch, lr, s.o.loader.batch_size, s.world,
                            s.counters.skipped_steps, s.loader->skipped(), 3.0 * s.model->flops_per_image(),
                            s.peak_flops, s.device});
  if (s.stall_since_log_s >= 0) {  // rank 0's, the rank that writes
    rec["checkpoint_stall_ms"] = 1e3 * s.stall_since_log_s;
    s.stall_since_log_s = -1;
  }
  s.metrics->write(rec);
  const double eta = seconds_per_step * double(s.o.steps - s.counters.step);
  progress.update(MetricsWindow::progress_text(rec, s.o.steps, eta), last);
}

bool due(int64_t every, int64_t step) { return every > 0 && step % every == 0; }

}  // namespace

TrainResult Trainer::run() {
  auto& s = *s_;
  const auto& o = s.o;
  install_stop_signal_handlers();
  start(s);
  const int64_t first_step = s.counters.step;
  const auto run_start = SteadyClock::now();
  ProgressLine progress(s.root, 0);
  MetricsWindow window;
  while (true) {
    // Step boundary: any rank's signal stops every rank here, at the same step.
    if (const int signal = agreed_stop_signal(*s.cpu_comm, *s.watchdog, s.counters.step)) {
      progress.break_line();
      spdlog::warn("stop requested (signal {} on some rank): checkpointing at step {}, then exit code {} (requeue)",
                   signal, s.counters.step, kExitRequeue);  // every rank says it: all stopped at one step
      if (s.checkpointer->last_step() != s.counters.step) checkpoint(s);
      s.checkpointer->finish();
      if (s.root)
        spdlog::info("checkpoint of step {} committed; exiting with code {} (requeue)", s.counters.step, kExitRequeue);
      return {TrainOutcome::Preempted, s.counters.step};
    }
    if (s.counters.step >= o.steps) break;
    const double lr = learning_rate(o.lr, s.counters.step);
    const StepResult r = s.step->run(s.counters.step, lr, [&] { return s.loader->next(); });
    s.sampler_state = r.sampler;
    s.counters.step += 1;
    const bool diverged = count_nonfinite(s.counters, r.finite, o.max_nonfinite_steps);
    if (!r.finite && s.root) {
      progress.break_line();
      spdlog::warn("step {}: non-finite gradient norm; update skipped ({} in a row, {} in all)", s.counters.step,
                   s.counters.nonfinite_in_row, s.counters.skipped_steps);
    }
    window.add(r);
    const bool last = s.counters.step == o.steps || diverged;
    if (due(std::max<int64_t>(1, o.log_every), s.counters.step) || last)
      log_metrics(s, window, progress, lr,
                  seconds_between(run_start, SteadyClock::now()) / double(s.counters.step - first_step), last);
    if (diverged) {
      if (s.root)
        spdlog::error("{} non-finite steps in a row: stopping at step {} after a checkpoint; lower train.lr, "
                      "raise train.warmup_steps or set train.grad_clip", s.counters.nonfinite_in_row, s.counters.step);
      checkpoint(s);
      s.checkpointer->finish();
      return {TrainOutcome::Diverged, s.counters.step};
    }
    if (due(o.checkpoint_every, s.counters.step) && !last) checkpoint(s);
    if (due(o.eval_every, s.counters.step) && !last) evaluate(s);
  }
  if (s.checkpointer->last_step() != s.counters.step) checkpoint(s);
  if (o.eval_final) evaluate(s);  // while the final checkpoint is written
  s.checkpointer->finish();
  if (s.root)
    spdlog::info("done: {} steps in {} ({} skipped); run directory {}", s.counters.step - first_step,
                 clock_text(seconds_between(run_start, SteadyClock::now())), s.counters.skipped_steps, o.run_dir);
  return {TrainOutcome::Completed, s.counters.step};
}

}  // namespace vdm
