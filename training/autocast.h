// bf16 autocast for one forward pass, as an RAII scope on CPU or CUDA, hiding the LibTorch API
// that changed between 1.13 (set_cpu_enabled / set_enabled) and 2.4+ (set_autocast_enabled with
// a device type).
#pragma once

#include <c10/core/DeviceType.h>

namespace vdm {

// Autocast keeps a cache of the bf16 copies of fp32 leaf tensors that require grad (the
// weights), keyed by the tensor, and reuses a copy for as long as the cache lives. Weights are
// updated in place (AdamW, the EMA swap), so a cache that outlives a step would feed every later
// forward the old weights. The scope therefore covers exactly one forward pass: it enables
// autocast on entry and, when the outermost scope ends, disables it and clears the cache.
// Backward, the optimiser, evaluation and checkpoints run outside any scope.
class AutocastScope {
 public:
  // enabled = false: does nothing. device: kCPU or kCUDA (a CUDA LibTorch is needed for kCUDA).
  AutocastScope(c10::DeviceType device, bool enabled);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  c10::DeviceType device_;
  bool enabled_;
  bool was_enabled_ = false;
};

}  // namespace vdm
