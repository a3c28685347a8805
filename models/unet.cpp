// ADM-style U-Net (see unet.h).
#include "models/unet.h"

#include <torch/torch.h>

#include <algorithm>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "models/unet_blocks.h"

namespace vdm {

void check_divisible(int64_t resolution, size_t levels, const char* model) {
  const int64_t factor = int64_t(1) << (levels - 1);
  if (resolution < 1 || resolution % factor != 0) {
    std::ostringstream msg;
    msg << model << ": resolution " << resolution << " does not halve cleanly through "
        << levels << " levels (it must be a multiple of " << factor
        << "); use fewer entries in channel_mult or resize the data (vdm pack --resolution)";
    throw std::invalid_argument(msg.str());
  }
}

namespace {

// Holds a ResBlock and an optional AttentionBlock as one ModuleList entry.
struct LevelBlockImpl : torch::nn::Module {
  LevelBlockImpl(ResBlock r, AttentionBlock a) : res(register_module("res", r)) {
    if (a) attn = register_module("attn", a);
  }
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& emb) {
    auto h = res(x, emb);
    return attn ? attn(h) : h;
  }
  ResBlock res;
  AttentionBlock attn{nullptr};
};
TORCH_MODULE(LevelBlock);

}  // namespace

void validate(const UNetOptions& o) {
  auto fail = [](const std::string& what) { throw std::invalid_argument("model." + what); };
  const auto& mult = o.channel_mult();
  if (o.base_channels() < 1) fail("channels: must be >= 1");
  if (mult.empty()) fail("channel_mult: needs at least one level, e.g. [1, 2, 2]");
  for (int64_t m : mult)
    if (m < 1) fail("channel_mult: every multiplier must be >= 1");
  if (o.num_res_blocks() < 1) fail("num_res_blocks: must be >= 1");
  if (!(o.dropout() >= 0 && o.dropout() < 1)) fail("dropout: must be in [0, 1)");
  if (o.num_heads() < 1) fail("num_heads: must be >= 1");
  if (o.head_channels() < 0) fail("head_channels: must be >= 0 (0: use num_heads)");
  if (o.num_classes() < 0) fail("num_classes: must be >= 0 (0: unconditional)");
  try {
    check_divisible(o.resolution(), mult.size(), "UNet");
  } catch (const std::invalid_argument& e) {
    fail("channel_mult: " + std::string(e.what()) + " (data.resolution=" + std::to_string(o.resolution()) + ")");
  }
  auto check_heads = [&](int64_t ch, const std::string& where) {
    const int64_t heads = o.head_channels() > 0 ? std::max<int64_t>(1, ch / o.head_channels()) : o.num_heads();
    if (ch % heads != 0)
      fail("num_heads: " + std::to_string(heads) + " heads do not divide the " + std::to_string(ch) + " channels at " +
           where);
  };
  // Attention only where a level is: a resolution that no level has would silently do nothing.
  std::vector<int64_t> levels;
  for (size_t l = 0; l < mult.size(); ++l) levels.push_back(o.resolution() >> l);
  for (int64_t r : o.attention_resolutions()) {
    const auto at = std::find(levels.begin(), levels.end(), r);
    if (at == levels.end()) {
      std::string list;
      for (int64_t l : levels) list += (list.empty() ? "" : ", ") + std::to_string(l);
      fail("attention_resolutions: " + std::to_string(r) + " px is not the resolution of a level (levels: " + list +
           " px)");
    }
    check_heads(o.base_channels() * mult[size_t(at - levels.begin())], std::to_string(r) + " px");
  }
  check_heads(o.base_channels() * mult.back(), "the middle block");  // it always attends
}

UNetImpl::UNetImpl(UNetOptions o) : options_(std::move(o)) {
  validate(options_);
  const auto& mult = options_.channel_mult();
  FlopCounter flops;
  const int64_t base = options_.base_channels(), emb_dim = 4 * base, C = options_.in_channels();
  const auto& attn_res = options_.attention_resolutions();
  auto heads_for = [&](int64_t ch) {
    return options_.head_channels() > 0 ? std::max<int64_t>(1, ch / options_.head_channels())
                                        : options_.num_heads();
  };
  auto level_block = [&](int64_t in, int64_t out, int64_t res) {
    const bool attend = std::find(attn_res.begin(), attn_res.end(), res) != attn_res.end();
    ResBlock r(in, out, emb_dim, options_.dropout(), options_.scale_shift(), res, res, flops);
    AttentionBlock a{nullptr};
    if (attend) a = AttentionBlock(out, heads_for(out), res, res, flops);
    return LevelBlock(r, a);
  };

  cond_ = register_module("cond", Conditioning(base, emb_dim, options_.num_classes()));
  flops.linear(base, emb_dim);
  flops.linear(emb_dim, emb_dim);
  conv_in_ = register_module("conv_in", torch::nn::Conv2d(torch::nn::Conv2dOptions(C, base, 3).padding(1)));
  int64_t res = options_.resolution();
  flops.conv(C, base, 3, res, res);

  std::vector<int64_t> skip_channels{base};
  int64_t ch = base;
  for (size_t level = 0; level < mult.size(); ++level) {
    for (int64_t b = 0; b < options_.num_res_blocks(); ++b) {
      const int64_t out = base * mult[level];
      down_->push_back(level_block(ch, out, res));
      down_kinds_.push_back(Kind::Res);
      ch = out;
      skip_channels.push_back(ch);
    }
    if (level + 1 < mult.size()) {
      down_->push_back(Downsample(ch, res, res, flops));
      down_kinds_.push_back(Kind::Down);
      res /= 2;
      skip_channels.push_back(ch);
    }
  }
  mid_->push_back(level_block(ch, ch, -1));
  mid_->push_back(AttentionBlock(ch, heads_for(ch), res, res, flops));
  mid_->push_back(level_block(ch, ch, -1));
  for (size_t level = mult.size(); level-- > 0;) {
    for (int64_t b = 0; b <= options_.num_res_blocks(); ++b) {
      const int64_t out = base * mult[level];
      up_->push_back(level_block(ch + skip_channels.back(), out, res));
      up_kinds_.push_back(Kind::Res);
      skip_channels.pop_back();
      ch = out;
    }
    if (level > 0) {
      up_->push_back(Upsample(ch, res, res, flops));
      up_kinds_.push_back(Kind::Up);
      res *= 2;
    }
  }
  register_module("down", down_);
  register_module("mid", mid_);
  register_module("up", up_);
  head_ = register_module("head", OutputHead(ch, C, res, res, flops));
  flops_ = flops.total;
}

torch::Tensor UNetImpl::forward(const torch::Tensor& x, const torch::Tensor& c_noise,
                                const torch::Tensor& labels) {
  TORCH_CHECK(x.dim() == 4 && x.size(1) == options_.in_channels(), "UNet: expected [B, ",
              options_.in_channels(), ", H, W] input, got ", x.sizes());
  check_divisible(x.size(2), options_.channel_mult().size(), "UNet");
  check_divisible(x.size(3), options_.channel_mult().size(), "UNet");
  auto emb = cond_(c_noise, labels);
  std::vector<torch::Tensor> skips;
  auto h = in_layout(conv_in_(x));
  skips.push_back(h);
  for (size_t i = 0; i < down_->size(); ++i) {
    h = down_kinds_[i] == Kind::Down ? down_[i]->as<DownsampleImpl>()->forward(h)
                                     : down_[i]->as<LevelBlockImpl>()->forward(h, emb);
    skips.push_back(h);
  }
  h = mid_[0]->as<LevelBlockImpl>()->forward(h, emb);
  h = mid_[1]->as<AttentionBlockImpl>()->forward(h);
  h = mid_[2]->as<LevelBlockImpl>()->forward(h, emb);
  for (size_t i = 0; i < up_->size(); ++i) {
    if (up_kinds_[i] == Kind::Up) {
      h = up_[i]->as<UpsampleImpl>()->forward(h);
    } else {
      h = up_[i]->as<LevelBlockImpl>()->forward(torch::cat({h, skips.back()}, 1), emb);
      skips.pop_back();
    }
  }
  auto out = head_(h);
  return options_.skip_input() ? x + out : out;
}

std::string UNetImpl::describe() const {
  std::ostringstream s;
  s << "ADM U-Net " << options_.resolution() << "px x" << options_.in_channels() << ", base "
    << options_.base_channels() << ", mult [";
  for (size_t i = 0; i < options_.channel_mult().size(); ++i)
    s << (i ? "," : "") << options_.channel_mult()[i];
  s << "], " << options_.num_res_blocks() << " res blocks/level, attention at [";
  for (size_t i = 0; i < options_.attention_resolutions().size(); ++i)
    s << (i ? "," : "") << options_.attention_resolutions()[i];
  s << "] px, dropout " << options_.dropout();
  if (options_.num_classes() > 0) s << ", " << options_.num_classes() << " classes";
  return s.str();
}

}  // namespace vdm
