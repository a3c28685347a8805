// Size and cost reporting shared by every network (see denoiser_net.h).
#include "models/denoiser_net.h"

#include <cstdio>

namespace vdm {

int64_t DenoiserNetImpl::parameter_count() const {
  int64_t n = 0;
  for (const auto& p : parameters()) n += p.numel();
  return n;
}

std::string DenoiserNetImpl::summary() const {
  char buf[96];
  std::snprintf(buf, sizeof buf, ": %.3gM parameters, %.3g GFLOP/image forward",
                double(parameter_count()) / 1e6, flops_ / 1e9);
  return describe() + buf;
}

}  // namespace vdm
