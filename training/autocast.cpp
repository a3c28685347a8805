// bf16 autocast scope (see autocast.h). Without a CUDA LibTorch there is nothing to enable, and
// the trainer never asks (bf16 is CUDA only).
#include "training/autocast.h"

#include <stdexcept>

#ifdef VDM_TORCH_HAS_CUDA
#include <ATen/autocast_mode.h>
#include <torch/version.h>
#endif

namespace vdm {

AutocastScope::AutocastScope(bool enabled) : enabled_(enabled) {
  if (!enabled_) return;
#ifdef VDM_TORCH_HAS_CUDA
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
  at::autocast::set_autocast_enabled(at::kCUDA, true);
#else
  at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
  at::autocast::set_enabled(true);
#endif
#else
  throw std::runtime_error("bf16 autocast needs a CUDA build of LibTorch");
#endif
}

AutocastScope::~AutocastScope() {
  if (!enabled_) return;
#ifdef VDM_TORCH_HAS_CUDA
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  at::autocast::set_autocast_enabled(at::kCUDA, false);
#else
  at::autocast::set_enabled(false);
#endif
  at::autocast::clear_cache();
#endif
}

}  // namespace vdm
