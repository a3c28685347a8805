// The learning rate as a pure function of the optimiser step: linear warmup from zero, then
// constant, linear decay to zero, or cosine decay to zero at the last step. Being a function of
// the step alone, it needs no state in a checkpoint.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vdm {

struct LrScheduleOptions {
  double lr = 2e-4;
  int64_t warmup_steps = 0;
  std::string shape = "constant";  // constant | linear | cosine
  int64_t total_steps = 1;
};

// The rate for the update that completes step `step` + 1 (step counts completed updates).
// The shapes learning_rate takes.
const std::vector<std::string>& lr_schedule_names();
double learning_rate(const LrScheduleOptions& options, int64_t step);

}  // namespace vdm
