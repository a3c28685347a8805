// Warmup + constant/linear/cosine learning rate (see lr_schedule.h).
#include "training/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace vdm {

const std::vector<std::string>& lr_schedule_names() {
  static const std::vector<std::string> names{"constant", "linear", "cosine"};
  return names;
}

double learning_rate(const LrScheduleOptions& o, int64_t step) {
  // The first update already moves (warmup step 0 -> lr/warmup, not 0), as in timm and EDM.
  if (step < o.warmup_steps) return o.lr * double(step + 1) / double(o.warmup_steps);
  if (o.shape == "constant") return o.lr;
  const double span = double(std::max<int64_t>(1, o.total_steps - o.warmup_steps));
  const double progress = std::clamp(double(step - o.warmup_steps) / span, 0.0, 1.0);
  if (o.shape == "linear") return o.lr * (1.0 - progress);
  if (o.shape == "cosine") return o.lr * 0.5 * (1.0 + std::cos(M_PI * progress));
  throw std::invalid_argument("learning-rate schedule '" + o.shape + "': expected constant, linear or cosine");
}

}  // namespace vdm
