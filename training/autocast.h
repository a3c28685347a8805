// bf16 autocast on CUDA as an RAII scope, hiding the LibTorch API that changed between 1.13
// (at::autocast::set_enabled) and 2.4+ (set_autocast_enabled(device_type, ...)).
#pragma once

namespace vdm {

class AutocastScope {
 public:
  explicit AutocastScope(bool enabled);  // false: does nothing
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool enabled_;
};

}  // namespace vdm
