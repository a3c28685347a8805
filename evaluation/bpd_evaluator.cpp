// Bits/dim of a held-out split: per-image VLB estimates accumulated in float64 on every rank,
// then one all-reduce of (sum, sum of squares, count, per-term sums); before it, the importance
// estimator's pilot histogram is all-reduced once.
#include "evaluation/bpd_evaluator.h"

#include <ATen/CPUGeneratorImpl.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "objectives/diffusion_terms.h"

namespace vdm {
namespace {

// Fixed and known to every rank, so that a rank without samples (which never sees a LossOutput)
// still all-reduces a tensor of the same layout.
const std::vector<std::string> kTerms = {"diffusion", "prior", "reconstruction"};
enum Slot { kSum, kSumSquares, kCount, kWithin, kAugmented, kAugmentedSquares, kPriorAtMin, kFirstTerm };
// (sqrt 5 - 1) / 2: the step of the Weyl sequence that spreads the split's uniforms.
constexpr double kGolden = 0.6180339887498949;

}  // namespace

// One uniform offset, the same on every rank for a seed.
static double shared_offset(uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed ^ 0xB5AD4ECEDA1CE2A9ull);
  return at::rand({1}, gen, torch::TensorOptions().dtype(torch::kFloat64)).item<double>();
}

torch::Tensor split_uniforms(uint64_t seed, const std::vector<int64_t>& indices, int64_t draws) {
  const double offset = shared_offset(seed);
  std::vector<double> u;
  u.reserve(indices.size() * size_t(draws));
  for (const int64_t n : indices) {
    const double base = offset + std::fmod(double(n) * kGolden, 1.0);
    for (int64_t k = 0; k < draws; ++k) u.push_back(std::fmod(base + double(k) / double(draws), 1.0));
  }
  return torch::tensor(u, torch::kFloat64);
}

MeanStderr mean_and_stderr(double sum, double sum_squares, int64_t count) {
  if (count < 1) return {std::nan(""), std::nan("")};
  const double n = double(count), mean = sum / n;
  if (count < 2) return {mean, 0.0};
  // Per-sample bpd values sit close together far from 0: the cancellation costs a few digits
  // of the variance at most, far below the Monte-Carlo error it measures.
  const double var = std::max(0.0, (sum_squares - sum * mean) / (n - 1.0));
  return {mean, std::sqrt(var / n)};
}

const std::vector<std::string>& bpd_estimator_names() {
  static const std::vector<std::string> names{"importance", "schedule"};
  return names;
}

// The estimator. The continuous-time diffusion term is 0.5 * integral over [lambda_min,
// lambda_max] of E||eps_hat - eps||^2 d lambda whatever the schedule's interior, so any density
// q(lambda) on that range gives an unbiased per-image estimate 0.5 ||eps_hat - eps||^2 / q(lambda).
// Under VDM's uniform t (q = 1/gamma'(t)) a trained model's integrand is far from flat: it swings
// by orders of magnitude across lambda, and a few images drawn at such levels dominate the
// variance. So a pilot first evaluates `pilot` images at one stratified lambda each (uniform over
// the range), and q becomes a histogram proportional to the root mean square of the integrand per
// bin (the variance-minimising shape, see AdaptiveProposal), with a 5% uniform share for support.
// The pilot's draws are independent of the main pass, so q is fixed before it: no bias.
// Then every image gets its uniform(s) from one lattice laid over the whole split, u_n = frac(u0 +
// n phi) with phi = (sqrt 5 - 1)/2 (a Weyl sequence, evenly spread over any run of indices, each
// u_n uniform given a uniform u0), and lambda = Q^-1(u_n): stratification across the split on top
// of importance sampling. Its standard error is the plain one over images: it counts the spread of
// the images' own likelihoods too, and overstates the Monte-Carlo part that the lattice reduces.
// Discrete time (T steps) keeps t uniform on the grid, on the same lattice.
BpdResult evaluate_bpd(ObjectiveImpl& trained_vlb, const Denoiser& denoiser, const Dataset& dataset,
                       Communicator* comm, int64_t rank, int64_t world, const BpdOptions& options,
                       torch::TensorOptions tensor_options) {
  if (trained_vlb.options().name != "vlb")
    throw std::invalid_argument("bpd: needs the vlb objective, got '" + trained_vlb.options().name + "'");
  if (world < 1 || rank < 0 || rank >= world)
    throw std::invalid_argument("bpd: need 0 <= rank < world");
  if (options.batch_size < 1) throw std::invalid_argument("bpd: batch_size must be >= 1");
  if (options.draws < 1 || options.pilot < 0 || options.bins < 1)
    throw std::invalid_argument("bpd: need draws >= 1, pilot >= 0 and bins >= 1");
  const auto& names = bpd_estimator_names();
  if (std::find(names.begin(), names.end(), options.estimator) == names.end())
    throw std::invalid_argument("bpd: unknown estimator '" + options.estimator + "' (choose importance or schedule)");
  torch::NoGradGuard no_grad;

  const int64_t total = options.max_samples > 0 ? std::min(options.max_samples, dataset.size())
                                                : dataset.size();
  const int64_t local = rank < total ? (total - rank + world - 1) / world : 0;
  const int64_t K = options.draws;
  const int64_t C = dataset.channels(), R = dataset.resolution(), bytes = dataset.sample_bytes();
  const bool conditional = options.conditional && dataset.num_classes() > 0 && options.null_label >= 0;
  const auto device = tensor_options.device();
  const auto dtype = c10::typeMetaToScalarType(tensor_options.dtype());
  // The golden-ratio step keeps the ranks' seeds apart for any user seed.
  auto gen = at::detail::createCPUGenerator(options.seed + uint64_t(rank) * 0x9E3779B97F4A7C15ull);
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  const double pilot_offset = shared_offset(options.seed ^ 0x5851F42D4C957F2Dull);
  // A forward pass holds batch_size rows: images times their draws.
  const int64_t per_batch = std::max<int64_t>(1, options.batch_size / K);

  auto reduce_sum = [&](torch::Tensor t) {
    if (comm == nullptr || world < 2) return t;
    auto on = t.to(comm->backend() == "nccl" ? device : torch::Device(torch::kCPU));
    comm->all_reduce(on, ReduceOp::Sum);
    return on.to(torch::kCPU).contiguous();
  };

  // Images `indices` (each repeated `repeat` times), on the device, with the labels asked for.
  auto pixels = torch::empty({std::max(per_batch, options.batch_size), C, R, R}, torch::kUInt8);
  auto read = [&](const std::vector<int64_t>& indices, int64_t repeat, torch::Tensor& labels) {
    const int64_t n = int64_t(indices.size());
    std::vector<int64_t> label_values;
    for (int64_t j = 0; j < n; ++j) {
      dataset.read(indices[j], pixels.data_ptr<uint8_t>() + j * bytes);
      label_values.push_back(conditional ? dataset.label(indices[j]) : options.null_label);
    }
    auto x = encode_pixels(pixels.slice(0, 0, n)).to(device, dtype);
    labels = options.null_label >= 0 ? torch::tensor(label_values, torch::kLong).to(device) : torch::Tensor();
    if (repeat > 1) {
      x = x.repeat_interleave(repeat, 0);
      if (labels.defined()) labels = labels.repeat_interleave(repeat, 0);
    }
    return x;
  };

  ObjectiveImpl* vlb = &trained_vlb;
  Objective own;
  const bool importance = options.estimator == "importance" && trained_vlb.options().timesteps == 0;
  if (importance) {
    own = make_vlb(trained_vlb.options(), trained_vlb.schedule_ptr());
    ProposalOptions po;
    po.name = "adaptive";
    po.adaptive_target = "rms";
    po.bins = options.bins;
    po.uniform_mix = 0.05;
    po.ema = 0.0;
    auto proposal = make_proposal(po, trained_vlb.schedule_ptr());
    own->set_proposal(proposal);
    vlb = own.get();
    // Pilot evaluation m takes image m mod total and the m-th of `pilot` strata of [0, 1).
    const int64_t pilot = total > 0 ? options.pilot : 0;
    std::vector<int64_t> batch;
    std::vector<double> u;
    for (int64_t m = rank; m < pilot; m += world) {
      batch.push_back(m % total);
      u.push_back(std::fmod(pilot_offset + double(m) / double(pilot), 1.0));
      if (int64_t(batch.size()) == options.batch_size || m + world >= pilot) {
        torch::Tensor labels;
        auto x = read(batch, 1, labels);
        ProposalContext ctx;
        ctx.uniforms = torch::tensor(u, f64);
        vlb->forward(denoiser, x, labels, LossRng{gen, gen}, ctx);  // the proposal observes it
        batch.clear();
        u.clear();
      }
    }
    proposal->commit(reduce_sum(proposal->pending_histogram()));
  }

  std::vector<double> sums(kFirstTerm + kTerms.size(), 0.0);
  const double w_min = options.weighting
                           ? options.weighting(torch::full({1}, options.weighting_range.first, f64)).item<double>()
                           : 1.0;
  const auto start = std::chrono::steady_clock::now();
  const int64_t batches = (local + per_batch - 1) / per_batch;
  int64_t next_report = 1;
  std::vector<int64_t> indices;
  for (int64_t b = 0, done = 0; b < batches; ++b) {
    const int64_t n = std::min(per_batch, local - done);
    indices.clear();
    for (int64_t j = 0; j < n; ++j) indices.push_back(rank + (done + j) * world);
    torch::Tensor labels;
    auto x = read(indices, K, labels);
    ProposalContext ctx;
    ctx.uniforms = split_uniforms(options.seed, indices, K);
    auto out = vlb->forward(denoiser, x, labels, LossRng{gen, gen}, ctx);

    auto draws = out.per_sample.detach().to(torch::kCPU, torch::kFloat64).view({n, K}) * out.bpd_per_nat;
    auto bpd = draws.mean(1);
    if (K > 1) sums[kWithin] += (draws.var(1) / double(K)).sum().item<double>();
    sums[kSum] += bpd.sum().item<double>();
    sums[kSumSquares] += bpd.square().sum().item<double>();
    sums[kCount] += double(n);
    if (out.terms.size() != kTerms.size())
      throw std::logic_error("bpd: the vlb objective reports other terms than expected");
    for (size_t k = 0; k < kTerms.size(); ++k)  // terms are means over the n K rows: back to image sums
      sums[kFirstTerm + k] += out.terms.at(kTerms[k]).item<double>() * double(n) * out.bpd_per_nat;
    if (options.weighting) {
      // The same draws weighted by w (0 outside the training range), per image; divided by
      // w(lambda_min) and with the prior at lambda_min, as add_augmented_elbo does in training.
      const auto [lo, hi] = options.weighting_range;
      auto l = out.lambda.to(torch::kCPU, torch::kFloat64);
      auto w = options.weighting(l) * ((l >= lo) & (l <= hi)).to(torch::kFloat64);
      auto prior = prior_kl(x, -lo * torch::ones({1}, f64.device(x.device()))).flatten(1).sum(1).to(torch::kCPU);
      auto per_image = ((out.diffusion.to(torch::kCPU) * w / w_min + prior) * out.bpd_per_nat).view({n, K}).mean(1);
      sums[kAugmented] += per_image.sum().item<double>();
      sums[kAugmentedSquares] += per_image.square().sum().item<double>();
      sums[kPriorAtMin] += (prior * out.bpd_per_nat).sum().item<double>() / double(K);
    }
    done += n;

    if (rank == 0 && batches >= 10 && (b + 1) * 10 >= next_report * batches) {
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      spdlog::info("bpd: {}/{} samples on rank 0, running mean {:.4f} bits/dim, {:.0f} s", done,
                   local, sums[kSum] / sums[kCount], seconds);
      while (next_report * batches <= (b + 1) * 10) ++next_report;
    }
  }

  auto reduced = reduce_sum(torch::tensor(sums, torch::kFloat64));
  std::copy(reduced.data_ptr<double>(), reduced.data_ptr<double>() + reduced.numel(), sums.begin());

  BpdResult result;
  result.samples = int64_t(std::llround(sums[kCount]));
  const auto stats = mean_and_stderr(sums[kSum], sums[kSumSquares], result.samples);
  result.bpd = stats.mean;
  result.bpd_stderr = stats.standard_error;
  for (size_t k = 0; k < kTerms.size(); ++k)
    result.terms_bpd[kTerms[k]] = sums[kFirstTerm + k] / sums[kCount];
  if (options.weighting && result.samples > 0) {
    const auto augmented = mean_and_stderr(sums[kAugmented], sums[kAugmentedSquares], result.samples);
    result.augmented_elbo_bpd = augmented.mean;
    result.augmented_elbo_stderr = augmented.standard_error;
    result.loss_normalised = (augmented.mean - sums[kPriorAtMin] / sums[kCount]) * std::log(2.0);
  }
  if (K > 1 && result.samples > 0) result.mc_stderr = std::sqrt(sums[kWithin]) / sums[kCount];
  result.estimator = importance ? "importance" : "schedule";
  result.conditional = conditional;
  return result;
}

}  // namespace vdm
