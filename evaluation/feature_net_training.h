// Training of the built-in FID feature network: cross-entropy on a labelled dataset with Adam
// and a cosine learning-rate decay, then its accuracy on a held-out split (the number that
// says whether the features are worth computing an FID with).
#pragma once

#include <cstdint>
#include <functional>

#include "data/dataset.h"
#include "evaluation/feature_net.h"

namespace vdm {

struct FeatureNetTrainingOptions {
  int64_t steps = 1000;
  int64_t batch_size = 64;
  double lr = 3e-3;           // Adam; decays to 0 along a cosine
  uint64_t seed = 0;          // which images form each batch
  int64_t eval_samples = 0;   // held-out images for the accuracy; 0: the whole split
  int64_t eval_batch_size = 500;
};

struct FeatureNetTrainingResult {
  double accuracy = 0;       // on the held-out images, in [0, 1]
  int64_t eval_samples = 0;
  double final_loss = 0;     // mean cross-entropy over the last 50 steps
  double seconds = 0;
};

// progress(step, loss) is called every 50 steps and at the end.
using FeatureNetProgress = std::function<void(int64_t step, double loss)>;

// train: batches drawn uniformly with replacement; held_out may be null (accuracy 0). Both
// must have the net's channels and num_classes <= the net's classes (checked up front).
FeatureNetTrainingResult train_feature_net(FeatureNet& net, const Dataset& train, const Dataset* held_out,
                                           const FeatureNetTrainingOptions& options,
                                           const FeatureNetProgress& progress = {});

// Fraction of the first max_samples (0: all) images whose argmax logit is their label.
double classification_accuracy(FeatureNet& net, const Dataset& data, int64_t max_samples,
                               int64_t batch_size = 500);

}  // namespace vdm
