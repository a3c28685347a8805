// Size and cost reporting shared by every network (see denoiser_net.h).
#include "models/denoiser_net.h"

#include <torch/torch.h>

#include <cstdio>

namespace vdm {

int64_t DenoiserNetImpl::parameter_count() const {
  int64_t n = 0;
  for (const auto& p : parameters()) n += p.numel();
  return n;
}

void DenoiserNetImpl::set_channels_last(bool on) {
  torch::NoGradGuard no_grad;
  const auto format = on ? torch::MemoryFormat::ChannelsLast : torch::MemoryFormat::Contiguous;
  for (auto& p : parameters())
    if (p.dim() == 4) p.set_data(p.contiguous(format));
  channels_last_ = on;
}

torch::Tensor DenoiserNetImpl::in_layout(const torch::Tensor& h) const {
  return channels_last_ && h.dim() == 4 ? h.contiguous(torch::MemoryFormat::ChannelsLast) : h;
}

std::string DenoiserNetImpl::summary() const {
  char buf[96];
  std::snprintf(buf, sizeof buf, ": %.3gM parameters, %.3g GFLOP/image forward",
                double(parameter_count()) / 1e6, flops_ / 1e9);
  return describe() + buf;
}

}  // namespace vdm
