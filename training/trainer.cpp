// The training loop behind `vdm train` (see trainer.h): set-up and resume, the step, metrics,
// preemption agreement, the non-finite guard and end-of-run evaluation. What a checkpoint holds
// and how it is encoded lives in train_state.cpp.
#include "training/trainer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>

#include "distributed/process_context.h"
#include "distributed/watchdog.h"
#include "objectives/diffusion_terms.h"
#include "training/autocast.h"
#include "training/elapsed_time.h"
#include "training/metrics_log.h"
#include "training/stop_signal.h"
#include "training/train_state.h"
#ifdef VDM_WITH_NCCL
#include "distributed/nccl_communicator.h"
#endif

namespace vdm {
namespace {

namespace fs = std::filesystem;

// A uniform number in [0, 1) that every rank computes alike for (seed, step, micro-batch):
// the shared offset that lets the proposal stratify t across the global batch without state.
double shared_uniform(uint64_t seed, int64_t step, int64_t micro) {
  const uint64_t z = derive_seed(seed, uint64_t(step) * 1024 + uint64_t(micro), "shared-offset");
  return double(z >> 11) * 0x1.0p-53;
}

}  // namespace

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
  int rank = 0, world = 1;
  c10::Device device{c10::kCPU};
  bool root = false;

  DenoiserNet model;
  Objective objective;
  Ema ema{nullptr};
  std::unique_ptr<torch::optim::AdamW> optimizer;
  GradientReducer::NamedParameters named;  // model then objective, as reducer and optimiser see them
  std::vector<torch::Tensor> params;
  CommunicatorPtr cpu_comm, grad_comm;
  std::unique_ptr<GradientReducer> reducer;
  std::unique_ptr<Watchdog> watchdog;
  std::unique_ptr<CheckpointStore> store;
  RngStreams rng;

  DatasetPtr train_set;
  std::unique_ptr<Loader> loader;
  SamplerState sampler_state;
  TrainCounters counters;
  int64_t last_checkpoint_step = -1;

  std::unique_ptr<MetricsLog> metrics, eval_log;
  Denoiser denoiser;
  // Test hook: VDM_FAULT_NAN_FROM_STEP=n makes every loss from step n on NaN, to exercise the
  // non-finite guard end to end (tests/integration/train_resume.sh).
  int64_t nan_from_step = -1;
};

Trainer::Trainer(TrainerOptions options, const ProcessContext& context) : s_(std::make_unique<State>()) {
  auto& s = *s_;
  s.o = std::move(options);
  s.rank = context.rank();
  s.world = context.world();
  s.device = context.device();
  s.root = context.is_root();
  auto& o = s.o;
  if (o.steps < 1 || o.grad_accum < 1 || o.loader.batch_size < 1)
    throw std::invalid_argument("train.steps, train.grad_accum and train.batch_size must be at least 1");
  torch::set_num_threads(int(std::max<int64_t>(1, o.threads)));
  if (const char* v = std::getenv("VDM_FAULT_NAN_FROM_STEP")) s.nan_from_step = std::atoll(v);

  // Identical initial weights on every rank (the reducer broadcasts rank 0's anyway).
  torch::manual_seed(derive_seed(o.seed, 0, "init"));
  s.model = make_model(o.model);
  s.objective = make_objective(o.objective, make_schedule(o.schedule));
  s.model->to(s.device);
  s.objective->to(s.device);
  s.ema = Ema(*s.model, o.ema);
  for (const auto& p : s.model->named_parameters()) s.named.emplace_back("model." + p.key(), p.value());
  for (const auto& p : s.objective->named_parameters()) s.named.emplace_back("objective." + p.key(), p.value());
  for (const auto& [name, tensor] : s.named) s.params.push_back(tensor);
  s.optimizer = std::make_unique<torch::optim::AdamW>(
      s.params, torch::optim::AdamWOptions(o.lr.lr)
                    .betas({o.adam_beta1, o.adam_beta2})
                    .eps(o.adam_eps)
                    .weight_decay(o.weight_decay));

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
  s.store = std::make_unique<CheckpointStore>(
      CheckpointStoreOptions{(fs::path(o.run_dir) / "checkpoints").string(), o.keep_last, o.keep_every});
  s.rng = RngStreams(o.seed, s.rank, s.device);

  s.train_set = open_dataset(o.data);
  // bf16 autocast covers the network's forward and nothing else (see autocast.h): the loss
  // maths, backward, the optimiser and evaluation run in the parameters' dtype.
  s.denoiser = [model = s.model, device = s.device.type(), bf16 = o.bf16, nhwc = o.channels_last](
                   const torch::Tensor& in, const torch::Tensor& c_noise, const torch::Tensor& labels) {
    AutocastScope autocast(device, bf16);
    return model->forward(nhwc ? in.contiguous(torch::MemoryFormat::ChannelsLast) : in, c_noise, labels);
  };
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

// ---- resume ----------------------------------------------------------------------------------
// Rank 0 chooses the checkpoint (the newest that verifies, for `auto`) and broadcasts its step,
// so that all ranks resume the same one even if another rank would have judged differently
// (a file changing under it); every rank then reads it from the shared run directory.
int64_t choose_checkpoint(Trainer::State& s) {
  int64_t step = -1;
  if (s.o.resume == "auto" && s.root) {
    s.store->remove_stale_temporaries();
    if (auto found = s.store->load_latest_valid()) step = found->step;
  }
  auto t = torch::tensor({step}, torch::kInt64);
  {
    auto guard = s.watchdog->watch("broadcast(resume step)", 0);
    s.cpu_comm->broadcast(t, 0);
  }
  return t.item<int64_t>();
}

void resume(Trainer::State& s) {
  std::string path;
  if (s.o.resume == "none") return;
  if (s.o.resume == "auto") {
    const int64_t step = choose_checkpoint(s);
    if (step < 0) return;
    path = (fs::path(s.store->options().dir) / CheckpointStore::folder_name(step)).string();
  } else {
    path = s.o.resume;
  }
  const LoadedCheckpoint ckpt = s.store->load(path);
  TrainStateRefs refs{*s.model, *s.ema, *s.objective, *s.optimizer, s.rng, s.device};
  const TrainStateInfo info = read_train_state(ckpt, refs, s.o.check_resume, s.rank, s.world);
  s.counters = info.counters;
  s.sampler_state = info.sampler;
  s.last_checkpoint_step = info.counters.step;
  if (info.world != s.world) {
    // Per-rank streams cannot be mapped onto a different number of ranks: start new ones that
    // depend on the step, so a second resume from this point repeats them.
    s.rng = RngStreams(derive_seed(s.o.seed, uint64_t(info.counters.step), "resized"), s.rank, s.device);
    if (s.root)
      spdlog::warn("resuming a {}-rank checkpoint on {} rank(s): the global sample stream continues, "
                   "per-rank noise streams restart", info.world, s.world);
  }
  if (s.root) spdlog::info("resumed from {} (step {}, epoch {})", path, info.counters.step, info.sampler.epoch);
}

// ---- checkpoint ------------------------------------------------------------------------------
// Every rank takes part: all ranks' RNG states are gathered (a collective), rank 0 writes, then
// rank 0 broadcasts whether the write succeeded. The broadcast keeps other ranks from exiting
// (on preemption) while rank 0 is still writing, which would make mpirun kill rank 0 mid-write,
// and turns a failed write into an error on every rank instead of only on rank 0.
void checkpoint(Trainer::State& s) {
  const int64_t step = s.counters.step;
  TrainStateRefs refs{*s.model, *s.ema, *s.objective, *s.optimizer, s.rng};
  torch::Tensor rng_all;
  {
    auto guard = s.watchdog->watch("all_gather(rng states)", step);
    rng_all = s.cpu_comm->all_gather(s.rng.state());
  }
  std::string error;
  if (s.root) {
    try {
      TrainStateInfo info{s.counters, s.sampler_state, s.world};
      const auto path = s.store->write(step, write_train_state(refs, info, rng_all, s.o.config_text));
      spdlog::info("checkpoint {}", path);
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  auto failed = torch::tensor({int64_t(error.empty() ? 0 : 1)}, torch::kInt64);
  {
    auto guard = s.watchdog->watch("broadcast(checkpoint status)", step);
    s.cpu_comm->broadcast(failed, 0);
  }
  if (failed.item<int64_t>() != 0)
    throw std::runtime_error("writing the checkpoint of step " + std::to_string(step) + " failed" +
                             (error.empty() ? " on rank 0" : ": " + error));
  s.last_checkpoint_step = step;
}

// ---- evaluation ------------------------------------------------------------------------------
// With the EMA weights and dropout off; every rank takes part, rank 0 appends to eval.jsonl.
void evaluate(Trainer::State& s) {
  EvaluatorOptions eo = s.o.eval;
  eo.seed = s.o.seed;
  eo.run_dir = s.o.run_dir;
  eo.data = s.o.data;
  eo.eval_data = s.o.eval_data;
  eo.num_classes = s.o.model.num_classes;
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

// ---- metrics ---------------------------------------------------------------------------------
// Sums over the steps since the last log line, on this rank; one all-reduce turns them into
// global means when a line is due.
struct Window {
  int64_t steps = 0, micro = 0;
  double loss = 0, data_wait_s = 0;
  std::map<std::string, double> terms;
  double bpd = 0;
  bool has_bpd = false;
  double grad_norm = 0;
  SteadyClock::time_point start = SteadyClock::now();
};

}  // namespace

TrainResult Trainer::run() {
  auto& s = *s_;
  const auto& o = s.o;
  install_stop_signal_handlers();
  resume(s);
  const int64_t first_step = s.counters.step;
  s.metrics = std::make_unique<MetricsLog>((fs::path(o.run_dir) / "metrics.jsonl").string(), s.root,
                                           first_step > 0 ? first_step : -1);
  s.eval_log = std::make_unique<MetricsLog>((fs::path(o.run_dir) / "eval.jsonl").string(), s.root,
                                            first_step > 0 ? first_step : -1);

  // After resume, which restores the layout the checkpoint was saved in. Only the layout
  // changes: convolutions then run NHWC (what cuDNN's bf16 kernels and mkldnn prefer), and
  // every tensor made like a weight (gradients, AdamW's moments) follows it.
  if (o.channels_last) {
    torch::NoGradGuard no_grad;
    for (auto& p : s.model->parameters())
      if (p.dim() == 4) p.set_data(p.contiguous(torch::MemoryFormat::ChannelsLast));
  }
  // After resume, so rank 0's broadcast start-up weights are the restored ones on every rank.
  s.reducer = std::make_unique<GradientReducer>(s.named, s.grad_comm, o.reducer);

  SamplerOptions so;
  so.dataset_size = s.train_set->size();
  so.rank = s.rank;
  so.world = s.world;
  so.seed = o.seed;
  DistributedSampler sampler(so);
  sampler.restore(s.sampler_state);
  s.loader = std::make_unique<Loader>(s.train_set, sampler, o.loader);

  LrScheduleOptions lr = o.lr;
  lr.total_steps = o.steps;
  const bool tty = s.root && ::isatty(STDERR_FILENO);
  const auto run_start = SteadyClock::now();
  Window window;
  TrainResult result;
  s.model->train();

  while (true) {
    // Step boundary: agree on preemption. Any rank's signal stops every rank at the same step.
    auto stop = torch::tensor({int64_t(stop_signal_received())}, torch::kInt64);
    {
      auto guard = s.watchdog->watch("all_reduce(stop flag)", s.counters.step);
      s.cpu_comm->all_reduce(stop, ReduceOp::Max);
    }
    if (stop.item<int64_t>() != 0) {
      if (tty) std::fprintf(stderr, "\n");
      // Every rank says it, so logs show that all stopped at the same step.
      spdlog::warn("stop requested (signal {} on some rank): checkpointing at step {}, then exit code {} (requeue)",
                     stop.item<int64_t>(), s.counters.step, kExitRequeue);
      if (s.last_checkpoint_step != s.counters.step) checkpoint(s);
      return {TrainOutcome::Preempted, s.counters.step};
    }
    if (s.counters.step >= o.steps) break;

    const int64_t step = s.counters.step;
    const double rate = learning_rate(lr, step);
    for (auto& group : s.optimizer->param_groups())
      static_cast<torch::optim::AdamWOptions&>(group.options()).lr(rate);
    s.reducer->zero_grad();  // not optimizer->zero_grad(): see GradientReducer::zero_grad

    for (int64_t micro = 0; micro < o.grad_accum; ++micro) {
      const auto wait0 = SteadyClock::now();
      Batch batch = s.loader->next();
      window.data_wait_s += seconds_between(wait0, SteadyClock::now());
      auto x = encode_pixels(batch.images).to(s.device);
      torch::Tensor labels;
      if (o.model.num_classes > 0) labels = batch.labels.to(s.device);
      ProposalContext ctx{s.rank, s.world, shared_uniform(o.seed, step, micro)};
      LossOutput out = s.objective->forward(s.denoiser, x, labels, {s.rng.levels, s.rng.noise}, ctx);
      if (s.nan_from_step >= 0 && step >= s.nan_from_step) out.loss = out.loss * std::nan("");
      {
        // All but the last micro-batch only accumulate; the last backward reduces the sum. The
        // reducer starts its all-reduces inside backward (a blocking one without overlap, and
        // NCCL's first call connects to the peers), so backward is watched too.
        std::optional<GradientReducer::NoSyncGuard> no_sync;
        if (micro + 1 < o.grad_accum) no_sync.emplace(s.reducer->no_sync());
        auto guard = s.watchdog->watch("backward (gradient all-reduce)", step);
        (out.loss / double(o.grad_accum)).backward();
      }
      window.micro += 1;
      window.loss += out.loss.item<double>();
      for (const auto& [name, value] : out.terms) window.terms[name] += value.item<double>();
      if (o.objective.name == "vlb") {
        window.bpd += out.per_sample.mean().item<double>() * out.bpd_per_nat;
        window.has_bpd = true;
      }
      s.sampler_state = batch.state_after;
    }
    {
      auto guard = s.watchdog->watch("gradient all-reduce", step);
      s.reducer->finish();
      // NCCL finishes on the device: wait here, where a failed collective becomes an error that
      // names it, rather than in the gradient norm's copy to the host, where it would hang.
      s.grad_comm->synchronize();
    }
    if (auto hist = s.objective->proposal().pending_histogram(); hist.defined()) {
      auto guard = s.watchdog->watch("all_reduce(proposal histogram)", step);
      s.cpu_comm->all_reduce(hist, ReduceOp::Sum);
      s.objective->proposal().commit(hist);
    }

    // Gradients are identical on every rank after the reduction, so every rank takes the same
    // decision here without another collective.
    // One device-to-host copy for all parameters, summed in parameter order on the host.
    std::vector<torch::Tensor> squares;
    for (const auto& p : s.params)
      if (p.grad().defined()) squares.push_back(p.grad().to(torch::kFloat64).pow(2).sum());
    double sq = 0;
    if (!squares.empty()) {
      const auto host = torch::stack(squares).to(torch::kCPU).contiguous();
      for (int64_t i = 0; i < host.numel(); ++i) sq += host.data_ptr<double>()[i];
    }
    const double grad_norm = std::sqrt(sq);
    s.counters.step += 1;
    if (!std::isfinite(grad_norm)) {
      s.counters.skipped_steps += 1;
      s.counters.nonfinite_in_row += 1;
      if (s.root)
        spdlog::warn("step {}: non-finite gradient norm; update skipped ({} in a row, {} in all)", step + 1,
                     s.counters.nonfinite_in_row, s.counters.skipped_steps);
    } else {
      s.counters.nonfinite_in_row = 0;
      if (o.grad_clip > 0 && grad_norm > o.grad_clip) {
        torch::NoGradGuard no_grad;
        const double scale = o.grad_clip / (grad_norm + 1e-6);
        for (const auto& p : s.params)
          if (p.grad().defined()) p.mutable_grad().mul_(scale);
      }
      s.optimizer->step();
      s.ema->update(*s.model, s.counters.step);
    }
    window.steps += 1;
    window.grad_norm += std::isfinite(grad_norm) ? grad_norm : 0.0;

    const bool diverged = s.counters.nonfinite_in_row >= o.max_nonfinite_steps;
    const bool last = s.counters.step == o.steps || diverged;
    if (window.steps > 0 && (s.counters.step % std::max<int64_t>(1, o.log_every) == 0 || last)) {
      // One all-reduce of the window's sums: [micro, loss, bpd, wait, terms...]; all ranks hold
      // the same term names in the same (sorted) order.
      std::vector<double> sums{double(window.micro), window.loss, window.bpd, window.data_wait_s};
      for (const auto& [name, value] : window.terms) sums.push_back(value);
      auto t = torch::tensor(sums, torch::kFloat64);
      {
        auto guard = s.watchdog->watch("all_reduce(metrics)", s.counters.step);
        s.cpu_comm->all_reduce(t, ReduceOp::Sum);
      }
      const auto now = SteadyClock::now();
      const double elapsed = seconds_between(window.start, now);
      const double micro_all = t[0].item<double>();
      nlohmann::json rec{{"step", s.counters.step},
                         {"epoch", s.sampler_state.epoch},
                         {"loss", t[1].item<double>() / micro_all},
                         {"grad_norm", window.grad_norm / double(window.steps)},
                         {"lr", rate},
                         {"img_per_s", micro_all * double(o.loader.batch_size) / elapsed},
                         {"data_wait_frac", t[3].item<double>() / double(s.world) / elapsed},
                         {"skipped_steps", s.counters.skipped_steps},
                         {"skipped_samples", s.loader->skipped()}};
      if (window.has_bpd) rec["bpd"] = t[2].item<double>() / micro_all;
      int64_t k = 4;
      for (const auto& [name, value] : window.terms) rec[name] = t[k++].item<double>() / micro_all;
      s.metrics->write(rec);
      if (s.root) {
        const double per_step = seconds_between(run_start, now) / double(s.counters.step - first_step);
        char line[256];
        std::snprintf(line, sizeof line, "step %lld/%lld  loss %.4f%s  %.0f img/s  data wait %.0f%%  ETA %s",
                      static_cast<long long>(s.counters.step), static_cast<long long>(o.steps),
                      rec["loss"].get<double>(),
                      window.has_bpd ? ("  bpd " + std::to_string(rec["bpd"].get<double>()).substr(0, 6)).c_str() : "",
                      rec["img_per_s"].get<double>(), 100 * rec["data_wait_frac"].get<double>(),
                      clock_text(per_step * double(o.steps - s.counters.step)).c_str());
        if (tty) {
          std::fprintf(stderr, "\r%-100s", line);
          if (last) std::fprintf(stderr, "\n");
        } else {
          spdlog::info("{}", line);
        }
      }
      window = Window{};
    }
    if (diverged) {
      if (s.root)
        spdlog::error("{} non-finite steps in a row: stopping at step {} after a checkpoint; lower "
                      "train.lr, raise train.warmup_steps or set train.grad_clip",
                      s.counters.nonfinite_in_row, s.counters.step);
      checkpoint(s);
      return {TrainOutcome::Diverged, s.counters.step};
    }
    if (o.checkpoint_every > 0 && s.counters.step % o.checkpoint_every == 0 && !last) checkpoint(s);
    if (o.eval_every > 0 && s.counters.step % o.eval_every == 0 && !last) evaluate(s);
  }
  if (s.last_checkpoint_step != s.counters.step) checkpoint(s);
  evaluate(s);
  if (s.root)
    spdlog::info("done: {} steps in {} ({} skipped); run directory {}", s.counters.step - first_step,
                 clock_text(seconds_between(run_start, SteadyClock::now())), s.counters.skipped_steps, o.run_dir);
  result.step = s.counters.step;
  return result;
}

}  // namespace vdm
