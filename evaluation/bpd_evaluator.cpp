// Bits/dim of a held-out split: per-sample VLBs accumulated in float64 on every rank, then one
// all-reduce of (sum, sum of squares, count, per-term sums).
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
enum Slot { kSum, kSumSquares, kCount, kFirstTerm };

}  // namespace

MeanStderr mean_and_stderr(double sum, double sum_squares, int64_t count) {
  if (count < 1) return {std::nan(""), std::nan("")};
  const double n = double(count), mean = sum / n;
  if (count < 2) return {mean, 0.0};
  // Per-sample bpd values sit close together far from 0: the cancellation costs a few digits
  // of the variance at most, far below the Monte-Carlo error it measures.
  const double var = std::max(0.0, (sum_squares - sum * mean) / (n - 1.0));
  return {mean, std::sqrt(var / n)};
}

BpdResult evaluate_bpd(ObjectiveImpl& vlb, const Denoiser& denoiser, const Dataset& dataset,
                       Communicator* comm, int64_t rank, int64_t world, const BpdOptions& options,
                       torch::TensorOptions tensor_options) {
  if (vlb.options().name != "vlb")
    throw std::invalid_argument("bpd: needs the vlb objective, got '" + vlb.options().name + "'");
  if (world < 1 || rank < 0 || rank >= world)
    throw std::invalid_argument("bpd: need 0 <= rank < world");
  if (options.batch_size < 1) throw std::invalid_argument("bpd: batch_size must be >= 1");
  torch::NoGradGuard no_grad;

  const int64_t total = options.max_samples > 0 ? std::min(options.max_samples, dataset.size())
                                                : dataset.size();
  const int64_t local = rank < total ? (total - rank + world - 1) / world : 0;
  const int64_t batches = (local + options.batch_size - 1) / options.batch_size;
  const int64_t C = dataset.channels(), R = dataset.resolution(), bytes = dataset.sample_bytes();
  const bool conditional = dataset.num_classes() > 0;
  const auto device = tensor_options.device();
  const auto dtype = c10::typeMetaToScalarType(tensor_options.dtype());
  // The golden-ratio step keeps the ranks' seeds apart for any user seed.
  auto gen = at::detail::createCPUGenerator(options.seed + uint64_t(rank) * 0x9E3779B97F4A7C15ull);

  std::vector<double> sums(kFirstTerm + kTerms.size(), 0.0);
  auto pixels = torch::empty({std::min(options.batch_size, std::max<int64_t>(local, 1)), C, R, R},
                             torch::kUInt8);
  std::vector<int64_t> label_values;
  const auto start = std::chrono::steady_clock::now();
  int64_t next_report = 1;
  for (int64_t b = 0, done = 0; b < batches; ++b) {
    const int64_t n = std::min(options.batch_size, local - done);
    label_values.clear();
    for (int64_t j = 0; j < n; ++j) {
      const int64_t index = rank + (done + j) * world;
      dataset.read(index, pixels.data_ptr<uint8_t>() + j * bytes);
      if (conditional) label_values.push_back(dataset.label(index));
    }
    auto x = encode_pixels(pixels.slice(0, 0, n)).to(device, dtype);
    torch::Tensor labels;
    if (conditional) labels = torch::tensor(label_values, torch::kLong).to(device);
    auto out = vlb.forward(denoiser, x, labels, gen);

    auto bpd = out.per_sample.detach().to(torch::kCPU, torch::kFloat64) * out.bpd_per_nat;
    sums[kSum] += bpd.sum().item<double>();
    sums[kSumSquares] += bpd.square().sum().item<double>();
    sums[kCount] += double(n);
    if (out.terms.size() != kTerms.size())
      throw std::logic_error("bpd: the vlb objective reports other terms than expected");
    for (size_t k = 0; k < kTerms.size(); ++k)  // terms are batch means: back to sums
      sums[kFirstTerm + k] += out.terms.at(kTerms[k]).item<double>() * double(n) * out.bpd_per_nat;
    done += n;

    if (rank == 0 && batches >= 10 && (b + 1) * 10 >= next_report * batches) {
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      spdlog::info("bpd: {}/{} samples on rank 0, running mean {:.4f} bits/dim, {:.0f} s", done,
                   local, sums[kSum] / sums[kCount], seconds);
      while (next_report * batches <= (b + 1) * 10) ++next_report;
    }
  }

  if (comm != nullptr && world > 1) {
    const auto where = comm->backend() == "nccl" ? device : torch::Device(torch::kCPU);
    auto reduced = torch::tensor(sums, torch::kFloat64).to(where);
    comm->all_reduce(reduced, ReduceOp::Sum);
    reduced = reduced.to(torch::kCPU).contiguous();
    std::copy(reduced.data_ptr<double>(), reduced.data_ptr<double>() + reduced.numel(), sums.begin());
  }

  BpdResult result;
  result.samples = int64_t(std::llround(sums[kCount]));
  const auto stats = mean_and_stderr(sums[kSum], sums[kSumSquares], result.samples);
  result.bpd = stats.mean;
  result.bpd_stderr = stats.standard_error;
  for (size_t k = 0; k < kTerms.size(); ++k)
    result.terms_bpd[kTerms[k]] = sums[kFirstTerm + k] / sums[kCount];
  return result;
}

}  // namespace vdm
