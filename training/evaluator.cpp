// Sample grid, FID and bits/dim of a model (see evaluator.h).
#include "training/evaluator.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <optional>
#include <stdexcept>

#include "distributed/watched_communicator.h"
#include "evaluation/feature_extractor.h"
#include "evaluation/feature_net.h"
#include "evaluation/feature_net_training.h"
#include "evaluation/feature_stats.h"
#include "evaluation/fid_statistics.h"
#include "evaluation/image_grid.h"
#include "training/checkpoint_store.h"
#include "training/elapsed_time.h"
#include "training/run_directory.h"
#include "training/train_state.h"

namespace vdm {
namespace {

namespace fs = std::filesystem;

// The watchdog times the collectives (comm), never the work between them: sampling, FID
// features and bits/dim take as long as they take on a healthy job. The one wait that is as long
// as work, the other ranks' while rank 0 trains the built-in feature net, is left unwatched: an
// error or a crash on rank 0 there still ends the whole job (run_or_abort, mpirun).
struct Run {
  const EvaluatorOptions& o;
  const EvaluationContext& ctx;
  Communicator* comm;  // ctx.comm under the watchdog
  bool root;
  int64_t step;
};

// A step where every rank learns rank 0's answer, so that ranks branch alike around collectives.
bool agreed(Communicator* comm, bool root_value) {
  auto t = torch::tensor({int64_t(root_value)}, torch::kInt64);
  comm->broadcast(t, 0);
  return t.item<int64_t>() != 0;
}

// The FID feature network: a TorchScript file, or the built-in classifier, which rank 0 trains
// on the training split the first time (while the others wait) and keeps in the run directory.
FeatureExtractorPtr feature_extractor(const Run& s) {
  std::string path = s.o.fid_features;
  if (path == "builtin") {
    path = RunDirectory(s.o.run_dir).fid_features();
    if (!agreed(s.comm, fs::exists(path))) {
      std::string error;
      if (s.root) {
        try {
          auto train_set = open_dataset(s.o.data);
          if (train_set->num_classes() < 2)
            throw std::runtime_error("eval.fid.features=builtin trains a classifier and needs a labelled dataset; "
                                     "give a TorchScript feature file instead");
          spdlog::info("training the built-in FID feature network on {} ...", s.o.data.split);
          FeatureNetOptions fo;
          fo.channels = train_set->channels();
          fo.resolution = train_set->resolution();
          fo.num_classes = train_set->num_classes();
          fo.seed = s.o.seed;
          torch::AutoGradMode grad_on(true);  // evaluate() runs under NoGradGuard
          FeatureNet net(fo);
          FeatureNetTrainingOptions to;
          to.seed = s.o.seed;
          auto held_out = open_dataset(s.o.eval_data);
          const auto r = train_feature_net(net, *train_set, held_out.get(), to);
          net.save(path);
          spdlog::info("FID feature network: {:.1f}% held-out accuracy ({:.0f} s), saved to {}", 100 * r.accuracy,
                       r.seconds, path);
        } catch (const std::exception& e) {
          error = e.what();
        }
      }
      if (agreed(s.ctx.comm, !error.empty()))  // unwatched: rank 0 was training
        throw std::runtime_error(error.empty() ? "training the FID feature network failed on rank 0" : error);
    }
  }
  return load_feature_extractor(path, {s.ctx.device});
}

// Statistics of the held-out split under the feature network, computed once by all ranks and
// kept in the run directory (or a given .npz); only rank 0's copy is used.
GaussianStats reference_stats(const Run& s, FeatureExtractor& extractor) {
  if (!s.o.fid_reference.empty()) return load_stats(s.o.fid_reference);
  const auto path = RunDirectory(s.o.run_dir).fid_reference();
  if (agreed(s.comm, fs::exists(path))) return s.root ? load_stats(path) : GaussianStats{};
  auto eval_set = open_dataset(s.o.eval_data);
  const FeatureStats stats = dataset_feature_stats(extractor, *eval_set, s.comm, s.ctx.rank, s.ctx.world);
  if (!s.root) return {};
  save_stats(path, stats.gaussian());
  spdlog::info("FID reference: {} images of the {} split -> {}", stats.count(), s.o.eval_data.split, path);
  return stats.gaussian();
}

// Every rank samples its share of the images (the grid's and the FID's); rank 0 writes the grid;
// the FID statistics are reduced to rank 0.
void samples_and_fid(const Run& s, const Denoiser& denoiser, ObjectiveImpl& objective, const Dataset& eval_set,
                     nlohmann::json& record) {
  const EvaluatorOptions& o = s.o;
  const EvaluationContext& ctx = s.ctx;
  const auto t0 = SteadyClock::now();
  const int64_t total = std::max(o.sample_count, o.fid ? o.fid_samples : int64_t(0));
  FeatureExtractorPtr extractor;
  GaussianStats reference;
  if (o.fid) {
    extractor = feature_extractor(s);
    reference = reference_stats(s, *extractor);
  }
  FeatureStats generated(o.fid ? extractor->dims() : 0);
  const int64_t share = (total + ctx.world - 1) / ctx.world;
  const int64_t grid_share = (o.sample_count + ctx.world - 1) / ctx.world;
  const int64_t c = eval_set.channels(), r = eval_set.resolution();
  // Sample i's noise comes from (seed, i) alone, so the images do not depend on how many
  // ranks made them; rank r makes indices [r * share, (r + 1) * share).
  SamplingOptions so = o.sampler;
  so.seed = derive_seed(o.seed, 0, "samples");
  so.batch_size = std::max<int64_t>(1, o.batch_size);
  if (o.num_classes > 0) so.null_label = o.num_classes;
  std::vector<int64_t> indices(share);
  for (int64_t i = 0; i < share; ++i) indices[i] = ctx.rank * share + i;
  torch::Tensor labels;
  if (o.num_classes > 0) labels = torch::tensor(indices, torch::kInt64).remainder(o.num_classes).to(ctx.device);
  const auto topts = torch::TensorOptions().device(ctx.device).dtype(torch::kFloat32);
  const torch::Tensor images = generate_samples(denoiser, objective.schedule(), *objective.parameterisation(),
                                                {c, r, r}, indices, labels, so, topts);
  if (o.fid) {
    // Only the first `total` images of the global set count (the last rank's share may run over).
    const int64_t keep = std::max<int64_t>(0, std::min(share, total - ctx.rank * share));
    for (int64_t b = 0; b < keep; b += so.batch_size)
      generated.add(extractor->features(images.narrow(0, b, std::min(so.batch_size, keep - b)).to(ctx.device)));
  }
  if (o.sample_count > 0) {
    const torch::Tensor all = s.comm->all_gather(images.narrow(0, 0, grid_share).contiguous());
    if (s.root) {
      const fs::path path = RunDirectory(o.run_dir).sample_grid(s.step);
      fs::create_directories(path.parent_path());
      // Small images are enlarged (nearest neighbour) so the grid is easy to look at.
      const int64_t zoom = std::max<int64_t>(1, 64 / r);
      auto grid = all.reshape({-1, c, r, r}).narrow(0, 0, o.sample_count);
      grid = grid.repeat_interleave(zoom, 2).repeat_interleave(zoom, 3);
      write_image_grid(path.string(), grid);
      record["samples"] = path.string();
    }
  }
  if (o.fid) {
    generated.reduce_to_root(s.comm);
    if (s.root) {
      record["fid"] = fid(generated.gaussian(), reference);
      record["fid_samples"] = generated.count();
      spdlog::info("FID {:.3f} ({} samples vs {}, {})", record["fid"].get<double>(), generated.count(),
                   o.fid_reference.empty() ? o.eval_data.split + " split" : o.fid_reference, extractor->describe());
    }
  }
  if (s.root)
    spdlog::info("sampling: {} images, {} {} steps ({:.1f} s)", total, o.sampler.sampler, o.sampler.steps,
                 seconds_between(t0, SteadyClock::now()));
}

// The full VLB of the held-out split, whatever the training objective, reduced to rank 0.
void bits_per_dim(const Run& s, const Denoiser& denoiser, ObjectiveImpl& objective, const Dataset& eval_set,
                  nlohmann::json& record) {
  const EvaluatorOptions& o = s.o;
  const auto t1 = SteadyClock::now();
  ObjectiveOptions vo = objective.options();
  vo.name = "vlb";
  vo.weighting = WeightingOptions{};
  vo.proposal = ProposalOptions{};
  auto vlb = make_vlb(vo, objective.schedule_ptr());
  const auto topts = torch::TensorOptions().device(s.ctx.device).dtype(torch::kFloat32);
  BpdOptions bo = o.bpd_options;
  bo.null_label = o.num_classes > 0 ? o.num_classes : -1;
  if (o.num_classes > 0 && !bo.conditional && !o.null_label_trained) {
    // The null class was never trained: -log p(x) under it would be a number about nothing.
    bo.conditional = true;
    if (s.root)
      spdlog::warn("bits/dim: the model never saw the null label (train.label_dropout=0), so -log p(x) cannot be "
                   "evaluated; reporting -log p(x|y) with the true labels (bpd_conditional: true)");
  }
  // The identity behind the augmented ELBO is about the continuous-time integral.
  const bool monotone = objective.monotone() && objective.options().timesteps == 0;
  if (monotone) {
    bo.weighting = [&objective](const torch::Tensor& lambda) { return objective.weighting(lambda); };
    bo.weighting_range = objective.proposal().range();
  }
  const BpdResult bpd = evaluate_bpd(*vlb, denoiser, eval_set, s.comm, s.ctx.rank, s.ctx.world, bo, topts);
  record["bpd"] = bpd.bpd;
  record["bpd_stderr"] = bpd.bpd_stderr;
  record["bpd_samples"] = bpd.samples;
  if (std::isfinite(bpd.mc_stderr)) record["bpd_mc_stderr"] = bpd.mc_stderr;
  record["weighting_monotone"] = objective.monotone();
  if (monotone) {
    record["loss_normalised"] = bpd.loss_normalised;
    record["augmented_elbo_bpd"] = bpd.augmented_elbo_bpd;
    record["augmented_elbo_stderr"] = bpd.augmented_elbo_stderr;
  }
  record["bpd_estimator"] = bpd.estimator;
  record["bpd_conditional"] = bpd.conditional;
  for (const auto& [name, value] : bpd.terms_bpd) record["bpd_" + name] = value;
  if (s.root) {
    const auto& t = bpd.terms_bpd;
    spdlog::info("{} bits/dim{}: {:.4f} +- {:.4f} over {} images (diffusion {:.4f}, prior {:.4f}, "
                 "reconstruction {:.4f}; {} estimator, {:.1f} s)",
                 o.eval_data.split, bpd.conditional ? " -log p(x|y)" : "", bpd.bpd, bpd.bpd_stderr, bpd.samples,
                 t.at("diffusion"), t.at("prior"), t.at("reconstruction"), bpd.estimator,
                 seconds_between(t1, SteadyClock::now()));
    if (monotone)
      spdlog::info("{} augmented ELBO of the training weighting: {:.4f} +- {:.4f} bits/dim (normalised weighted "
                   "loss {:.5f} nats/dim)", o.eval_data.split, bpd.augmented_elbo_bpd, bpd.augmented_elbo_stderr,
                   bpd.loss_normalised);
    else if (!objective.monotone())
      spdlog::info("augmented ELBO: none, the weighting of {} is not monotone (Kingma & Gao's identity needs a "
                   "non-increasing w)", objective.options().name == "weighted"
                                            ? "weighting " + objective.options().weighting.name
                                            : "objective " + objective.options().name);
  }
}

}  // namespace

nlohmann::json evaluate_model(const EvaluatorOptions& o, const EvaluationContext& ctx, const DenoiserNet& model,
                              ObjectiveImpl& objective, int64_t step) {
  WatchedCommunicator comm(*ctx.comm, ctx.watchdog, "evaluation", step);
  const Run s{o, ctx, &comm, ctx.rank == 0, step};
  torch::NoGradGuard no_grad;
  const Denoiser denoiser = [&model](const torch::Tensor& in, const torch::Tensor& c_noise,
                                     const torch::Tensor& labels) { return model->forward(in, c_noise, labels); };
  auto eval_set = open_dataset(o.eval_data);
  nlohmann::json record{{"step", step}};
  if (std::max(o.sample_count, o.fid ? o.fid_samples : int64_t(0)) > 0)
    samples_and_fid(s, denoiser, objective, *eval_set, record);
  if (o.bpd) bits_per_dim(s, denoiser, objective, *eval_set, record);
  return record;
}

}  // namespace vdm
