// VDM-style U-Net without downsampling (see vdm_unet.h).
#include "models/vdm_unet.h"

#include <torch/torch.h>

#include <sstream>
#include <stdexcept>
#include <string>

#include "models/unet_blocks.h"

namespace vdm {

void validate(const VdmUNetOptions& o) {
  auto fail = [](const std::string& what) { throw std::invalid_argument("model." + what); };
  if (o.channels() < 1) fail("channels: must be >= 1");
  if (o.num_blocks() < 1) fail("num_blocks: must be >= 1");
  if (o.resolution() < 1) fail("resolution: must be >= 1");
  if (!(o.dropout() >= 0 && o.dropout() < 1)) fail("dropout: must be in [0, 1)");
  if (o.num_heads() < 1 || o.channels() % o.num_heads() != 0)
    fail("num_heads: must be >= 1 and divide the " + std::to_string(o.channels()) + " channels");
  if (o.num_classes() < 0) fail("num_classes: must be >= 0 (0: unconditional)");
}

VdmUNetImpl::VdmUNetImpl(VdmUNetOptions o) : options_(std::move(o)) {
  validate(options_);
  FlopCounter flops;
  const int64_t ch = options_.channels(), emb_dim = 4 * ch, C = options_.in_channels();
  const int64_t R = options_.resolution();
  const int64_t n_fourier = std::max<int64_t>(0, options_.fourier_max() - options_.fourier_min() + 1);
  const int64_t c_in = C * (1 + 2 * n_fourier);
  auto block = [&](int64_t in) {
    return ResBlock(in, ch, emb_dim, options_.dropout(), /*scale_shift=*/false, R, R, flops);
  };
  cond_ = register_module("cond", Conditioning(ch, emb_dim, options_.num_classes()));
  flops.linear(ch, emb_dim);
  flops.linear(emb_dim, emb_dim);
  conv_in_ = register_module("conv_in", torch::nn::Conv2d(torch::nn::Conv2dOptions(c_in, ch, 3).padding(1)));
  flops.conv(c_in, ch, 3, R, R);
  for (int64_t i = 0; i < options_.num_blocks(); ++i) down_->push_back(block(ch));
  mid_->push_back(block(ch));
  mid_->push_back(AttentionBlock(ch, options_.num_heads(), R, R, flops));
  mid_->push_back(block(ch));
  for (int64_t i = 0; i <= options_.num_blocks(); ++i) up_->push_back(block(2 * ch));
  register_module("down", down_);
  register_module("mid", mid_);
  register_module("up", up_);
  head_ = register_module("head", OutputHead(ch, C, R, R, flops));
  flops_ = flops.total;
}

torch::Tensor VdmUNetImpl::forward(const torch::Tensor& x, const torch::Tensor& c_noise,
                                   const torch::Tensor& labels) {
  TORCH_CHECK(x.dim() == 4 && x.size(1) == options_.in_channels(), "VdmUNet: expected [B, ",
              options_.in_channels(), ", H, W] input, got ", x.sizes());
  auto emb = cond_(c_noise, labels);
  auto h = in_layout(conv_in_(options_.fourier_max() >= options_.fourier_min()
                                  ? fourier_features(x, options_.fourier_min(), options_.fourier_max())
                                  : x));
  std::vector<torch::Tensor> skips{h};
  for (auto& m : *down_) {
    h = m->as<ResBlockImpl>()->forward(h, emb);
    skips.push_back(h);
  }
  h = mid_[0]->as<ResBlockImpl>()->forward(h, emb);
  h = mid_[1]->as<AttentionBlockImpl>()->forward(h);
  h = mid_[2]->as<ResBlockImpl>()->forward(h, emb);
  for (auto& m : *up_) {
    h = m->as<ResBlockImpl>()->forward(torch::cat({h, skips.back()}, 1), emb);
    skips.pop_back();
  }
  auto out = head_(h);
  return options_.skip_input() ? x + out : out;
}

std::string VdmUNetImpl::describe() const {
  std::ostringstream s;
  s << "VDM U-Net " << options_.resolution() << "px x" << options_.in_channels() << ", "
    << options_.num_blocks() << " blocks of " << options_.channels()
    << " channels (no downsampling), Fourier features n=" << options_.fourier_min() << ".."
    << options_.fourier_max() << ", dropout " << options_.dropout();
  if (options_.num_classes() > 0) s << ", " << options_.num_classes() << " classes";
  return s.str();
}

}  // namespace vdm
