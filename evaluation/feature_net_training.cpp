// Feature-net training: a plain loop over random batches read straight from the dataset (the
// idx split lives in memory, so no loader threads are needed at this size).
#include "evaluation/feature_net_training.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>
#include <stdexcept>

namespace vdm {
namespace {

struct LabelledBatch {
  torch::Tensor images, labels;
};

LabelledBatch read_batch(const Dataset& data, const std::vector<int64_t>& indices) {
  const int64_t n = int64_t(indices.size()), bytes = data.sample_bytes();
  LabelledBatch b{torch::empty({n, data.channels(), data.resolution(), data.resolution()}, torch::kUInt8),
                  torch::empty({n}, torch::kLong)};
  auto* pixels = b.images.data_ptr<uint8_t>();
  auto* labels = b.labels.data_ptr<int64_t>();
  for (int64_t j = 0; j < n; ++j) {
    data.read(indices[j], pixels + j * bytes);
    labels[j] = data.label(indices[j]);
  }
  return b;
}

void check_fits(const FeatureNet& net, const Dataset& data, const char* role) {
  const auto& o = net.options();
  if (data.num_classes() < 2)
    throw std::invalid_argument(std::string("feature net: the ") + role + " data has no class labels; "
                                "the feature net learns by classifying, so it needs a labelled "
                                "dataset (idx, or an image folder with one folder per class)");
  if (data.num_classes() > o.num_classes || data.channels() != o.channels)
    throw std::invalid_argument(std::string("feature net: the ") + role + " data has " +
                                std::to_string(data.channels()) + " channels and " +
                                std::to_string(data.num_classes()) + " classes; the net takes " +
                                std::to_string(o.channels) + " channels and " +
                                std::to_string(o.num_classes) + " classes");
}

}  // namespace

double classification_accuracy(FeatureNet& net, const Dataset& data, int64_t max_samples,
                               int64_t batch_size) {
  torch::NoGradGuard no_grad;
  const int64_t total = max_samples > 0 ? std::min(max_samples, data.size()) : data.size();
  int64_t correct = 0;
  for (int64_t start = 0; start < total; start += batch_size) {
    std::vector<int64_t> indices;
    for (int64_t i = start; i < std::min(total, start + batch_size); ++i) indices.push_back(i);
    const auto b = read_batch(data, indices);
    correct += net.logits(b.images).argmax(1).eq(b.labels).sum().item<int64_t>();
  }
  return total > 0 ? double(correct) / double(total) : 0.0;
}

FeatureNetTrainingResult train_feature_net(FeatureNet& net, const Dataset& train, const Dataset* held_out,
                                           const FeatureNetTrainingOptions& o,
                                           const FeatureNetProgress& progress) {
  if (o.steps < 1 || o.batch_size < 1) throw std::invalid_argument("feature net: steps and batch_size must be >= 1");
  check_fits(net, train, "training");
  if (held_out) check_fits(net, *held_out, "held-out");
  const auto start = std::chrono::steady_clock::now();

  torch::optim::Adam optimizer(net.parameters(), torch::optim::AdamOptions(o.lr));
  std::mt19937_64 rng(o.seed);
  std::uniform_int_distribution<int64_t> pick(0, train.size() - 1);
  std::vector<int64_t> indices(static_cast<size_t>(o.batch_size));
  std::vector<double> recent;
  for (int64_t step = 1; step <= o.steps; ++step) {
    const double lr = 0.5 * o.lr * (1.0 + std::cos(M_PI * double(step - 1) / double(o.steps)));
    for (auto& group : optimizer.param_groups())
      static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
    for (auto& i : indices) i = pick(rng);
    const auto b = read_batch(train, indices);
    optimizer.zero_grad();
    auto loss = torch::cross_entropy_loss(net.logits(b.images), b.labels);
    loss.backward();
    optimizer.step();
    recent.push_back(loss.item<double>());
    if (recent.size() > 50) recent.erase(recent.begin());
    if (progress && (step % 50 == 0 || step == o.steps)) {
      double mean = 0;
      for (double l : recent) mean += l;
      progress(step, mean / double(recent.size()));
    }
  }

  FeatureNetTrainingResult r;
  for (double l : recent) r.final_loss += l / double(recent.size());
  if (held_out) {
    r.eval_samples = o.eval_samples > 0 ? std::min(o.eval_samples, held_out->size()) : held_out->size();
    r.accuracy = classification_accuracy(net, *held_out, r.eval_samples, o.eval_batch_size);
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace vdm
