// The networks: shapes for every preset at its resolution, the zero-initialised heads, class
// dropout and the null class, EMA arithmetic and warmup, bitwise save/load, shape errors, and
// an overfit check that the tiny net trained with eps-MSE memorises one batch.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>

#include "models/ema.h"
#include "models/embedding.h"
#include "models/model_presets.h"
#include "models/unet.h"
#include "models/vdm_unet.h"
#include "objectives/objective.h"

namespace vdm {
namespace {

torch::Tensor images(int64_t B, int64_t C, int64_t R, uint64_t seed = 1) {
  auto g = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::rand({B, C, R, R}, g, torch::TensorOptions()) * 2 - 1;
}

torch::Tensor noise_levels(int64_t B) { return torch::linspace(-1.6, 0.6, B); }

struct PresetCase {
  const char* preset;
  int64_t channels, resolution, classes;
};

TEST(Models, EveryPresetKeepsTheShape) {
  for (const auto& c : {PresetCase{"tiny", 1, 16, 0}, PresetCase{"quickstart", 1, 28, 10},
                        PresetCase{"cifar10_vdm", 3, 32, 0}, PresetCase{"imagenet64_adm", 3, 64, 1000}}) {
    torch::manual_seed(0);
    auto net = make_model(model_preset(c.preset, c.channels, c.resolution, c.classes));
    torch::NoGradGuard no_grad;
    net->eval();
    auto x = images(1, c.channels, c.resolution);
    auto labels = c.classes ? torch::tensor({3}, torch::kLong) : torch::Tensor();
    auto y = net->forward(x, noise_levels(1), labels);
    EXPECT_EQ(y.sizes(), x.sizes()) << c.preset;
    EXPECT_TRUE(torch::isfinite(y).all().item<bool>()) << c.preset;
    EXPECT_GT(net->flops_per_image(), 0) << c.preset;
    std::cout << c.preset << ": " << net->parameter_count() << " parameters, "
              << net->flops_per_image() / 1e9 << " GFLOP/image forward; " << net->describe() << "\n";
  }
}

TEST(Models, TinyIsTiny) {
  EXPECT_LT(make_model(model_preset("tiny", 3, 32))->parameter_count(), 100000);
}

TEST(Models, ZeroInitialisedHeads) {
  torch::NoGradGuard no_grad;
  auto x = images(3, 3, 8);
  // VDM-style: eps_hat = z + NN(z) with NN's last conv zero: exactly z.
  VdmUNet vdm(VdmUNetOptions().resolution(8).channels(16).num_blocks(2));
  EXPECT_TRUE(torch::equal(vdm->forward(x, noise_levels(3), {}), x));
  // ADM-style: the head is zero, so the output is exactly 0 (eps_hat = 0 for eps-prediction).
  UNet adm(UNetOptions().resolution(8).base_channels(16).channel_mult({1, 2}).num_res_blocks(1)
               .attention_resolutions({4}));
  EXPECT_EQ(adm->forward(x, noise_levels(3), {}).abs().max().item<float>(), 0.0f);
}

TEST(Models, ClassDropoutGivesTheNullClass) {
  auto g = at::make_generator<at::CPUGeneratorImpl>(4);
  auto labels = torch::tensor({0, 1, 2, 3, 4, 5, 6, 7}, torch::kLong);
  EXPECT_TRUE(torch::equal(drop_labels(labels, 10, 1.0, g), torch::full({8}, 10, torch::kLong)));
  EXPECT_TRUE(torch::equal(drop_labels(labels, 10, 0.0, g), labels));
  auto half = drop_labels(torch::zeros({20000}, torch::kLong), 10, 0.25, g);
  EXPECT_NEAR((half == 10).to(torch::kFloat64).mean().item<double>(), 0.25, 0.01);
  // A dropped label and no label give the same (null-class) output; a real one differs.
  torch::manual_seed(1);
  UNet net(UNetOptions().resolution(8).base_channels(16).channel_mult({1, 2}).num_res_blocks(1)
               .attention_resolutions({}).num_classes(10).dropout(0));
  {
    torch::NoGradGuard no_grad;
    for (auto& p : net->parameters()) p.add_(0.05 * torch::randn_like(p));  // leave zero init
  }
  torch::NoGradGuard no_grad;
  auto x = images(2, 3, 8);
  auto null = net->forward(x, noise_levels(2), torch::full({2}, 10, torch::kLong));
  EXPECT_TRUE(torch::equal(null, net->forward(x, noise_levels(2), {})));
  EXPECT_FALSE(torch::allclose(null, net->forward(x, noise_levels(2), torch::tensor({1, 2}))));
}

TEST(Models, ShapesThatDoNotHalveAreRefused) {
  try {
    UNet(UNetOptions().resolution(28).channel_mult({1, 2, 2, 2}));
    FAIL() << "28 px through 4 levels must be refused";
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("resolution 28"), std::string::npos) << msg;
    EXPECT_NE(msg.find("multiple of 8"), std::string::npos) << msg;
  }
  EXPECT_NO_THROW(UNet(UNetOptions().resolution(28).base_channels(8).channel_mult({1, 2, 2}).attention_resolutions({7})));
  UNet net(UNetOptions().resolution(16).base_channels(8).channel_mult({1, 2, 2}).attention_resolutions({}));
  EXPECT_THROW(net->forward(images(1, 3, 18), noise_levels(1), {}), std::invalid_argument);
  EXPECT_THROW(net->forward(images(1, 1, 16), noise_levels(1), {}), c10::Error);
}

TEST(Models, FlopsScaleWithPixels) {
  // Convolutions scale with H W; the middle attention's QK^T and AV scale with (H W)^2 and
  // add a little more, the embedding MLPs a little less.
  auto at = [](int64_t r) {
    return UNet(UNetOptions().resolution(r).base_channels(16).channel_mult({1, 2}).attention_resolutions({}))
        ->flops_per_image();
  };
  EXPECT_GT(at(32) / at(16), 4.0);
  EXPECT_LT(at(32) / at(16), 4.5);
}

TEST(Ema, ArithmeticIsExact) {
  torch::manual_seed(0);
  UNet net(UNetOptions().resolution(8).base_channels(8).channel_mult({1}).attention_resolutions({}));
  Ema ema(*net, EmaOptions{0.9, "none"});
  std::vector<torch::Tensor> before;
  for (auto& b : ema->buffers()) before.push_back(b.clone());
  {
    torch::NoGradGuard no_grad;
    for (auto& p : net->parameters()) p.add_(torch::randn_like(p));
  }
  ema->update(*net, 5);
  auto params = net->parameters();
  auto shadow = ema->buffers();
  ASSERT_EQ(params.size(), shadow.size());
  for (size_t i = 0; i < params.size(); ++i)
    EXPECT_TRUE(torch::equal(shadow[i], before[i].mul(0.9).add(params[i], 1.0 - 0.9))) << i;
}

TEST(Ema, PowerWarmup) {
  UNet net(UNetOptions().resolution(8).base_channels(8).channel_mult({1}).attention_resolutions({}));
  Ema ema(*net, EmaOptions{0.999, "power", 1.0, 2.0 / 3.0, 0});
  EXPECT_DOUBLE_EQ(ema->decay_at(0), 0.0);  // the first update copies the model
  EXPECT_NEAR(ema->decay_at(10), 1.0 - std::pow(11.0, -2.0 / 3.0), 1e-15);
  EXPECT_DOUBLE_EQ(ema->decay_at(100000000), 0.999);
  // copy_to / swap_with
  UNet other(UNetOptions().resolution(8).base_channels(8).channel_mult({1}).attention_resolutions({}));
  ema->copy_to(*other);
  auto a = net->parameters(), b = other->parameters();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i]));
}

TEST(Models, SaveLoadRoundTripIsBitwise) {
  const auto path = std::filesystem::temp_directory_path() / "vdm_model_roundtrip.pt";
  torch::manual_seed(0);
  auto net = make_model(model_preset("tiny", 3, 16, 5));
  {
    torch::NoGradGuard no_grad;
    for (auto& p : net->parameters()) p.add_(torch::randn_like(p));
  }
  Ema ema(*net, EmaOptions{});
  ema->update(*net, 3);
  {
    torch::serialize::OutputArchive archive;
    torch::serialize::OutputArchive model_archive, ema_archive;
    net->save(model_archive);
    ema->save(ema_archive);
    archive.write("model", model_archive);
    archive.write("ema", ema_archive);
    archive.save_to(path.string());
  }
  torch::manual_seed(123);  // a differently initialised copy
  auto loaded = make_model(model_preset("tiny", 3, 16, 5));
  Ema loaded_ema(*loaded, EmaOptions{});
  {
    torch::serialize::InputArchive archive, model_archive, ema_archive;
    archive.load_from(path.string());
    archive.read("model", model_archive);
    archive.read("ema", ema_archive);
    loaded->load(model_archive);
    loaded_ema->load(ema_archive);
  }
  auto a = net->named_parameters(), b = loaded->named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i].value(), b[i].value())) << a[i].key();
  auto ea = ema->buffers(), eb = loaded_ema->buffers();
  for (size_t i = 0; i < ea.size(); ++i) EXPECT_TRUE(torch::equal(ea[i], eb[i]));
  // and the loaded EMA still tracks the loaded model
  loaded_ema->update(*loaded, 4);
  std::filesystem::remove(path);
}

// set_channels_last changes the layout and nothing else: the same outputs and gradients as the
// NCHW net to float tolerance (the NHWC convolutions and group_norm_silu sum in other orders),
// NHWC weights and, for an image of 3 channels, an NHWC output. The 1-channel quickstart stem
// is the case where the layout must be forced (DenoiserNetImpl::in_layout).
TEST(Models, ChannelsLastIsALayoutChangeOnly) {
  for (const auto& c : {PresetCase{"quickstart", 1, 16, 0}, PresetCase{"tiny", 3, 16, 0}}) {
    SCOPED_TRACE(c.preset);
    std::vector<DenoiserNet> nets;
    for (bool nhwc : {false, true}) {
      torch::manual_seed(0);
      auto net = make_model(model_preset(c.preset, c.channels, c.resolution, c.classes));
      {
        torch::NoGradGuard no_grad;  // non-zero heads, so that every branch shows in the output
        for (auto& p : net->parameters()) p.add_(torch::randn_like(p) * 0.05);
      }
      net->eval();  // no dropout: the masks differ between layouts by design
      net->set_channels_last(nhwc);
      nets.push_back(net);
    }
    EXPECT_TRUE(nets[1]->channels_last());
    for (const auto& p : nets[1]->parameters())
      if (p.dim() == 4 && p.size(1) > 1 && p.size(2) > 1)
        EXPECT_TRUE(p.is_contiguous(torch::MemoryFormat::ChannelsLast) && !p.is_contiguous());
    const auto x = images(4, c.channels, c.resolution);
    std::vector<torch::Tensor> outs;
    for (auto& net : nets) {
      auto y = net->forward(x.contiguous(net->channels_last() ? torch::MemoryFormat::ChannelsLast
                                                              : torch::MemoryFormat::Contiguous),
                            noise_levels(4), {});
      y.square().sum().backward();
      outs.push_back(y);
    }
    if (c.channels > 1) EXPECT_FALSE(outs[1].is_contiguous());
    EXPECT_TRUE(torch::allclose(outs[1], outs[0], 1e-4, 1e-5));
    // A bias followed by a GroupNorm of one channel per group has gradient 0 in exact arithmetic,
    // so each parameter's error is measured against its own scale plus a floor from the largest.
    auto a = nets[0]->named_parameters(), b = nets[1]->named_parameters();
    double largest = 0;
    for (const auto& p : a) largest = std::max(largest, p.value().grad().abs().max().item<double>());
    for (size_t i = 0; i < a.size(); ++i) {
      const auto& ga = a[i].value().grad();
      const auto& gb = b[i].value().grad();
      EXPECT_LT((gb - ga).abs().max().item<double>(), 1e-3 * ga.abs().max().item<double>() + 1e-5 * largest)
          << a[i].key();
    }
  }
}

// The tiny net with the eps-MSE objective memorises one fixed batch: the same 8 images, noise
// levels and noise every step (the generator is re-seeded), so the loss can go to ~0.
TEST(Models, TinyOverfitsOneBatch) {
  torch::manual_seed(0);
  auto net = make_model(model_preset("tiny", 1, 16));
  ObjectiveOptions oo;
  oo.name = "eps_mse";
  auto objective = make_objective(oo, make_schedule(ScheduleOptions{}));
  auto x = images(8, 1, 16, 7);
  Denoiser denoiser = [&](const torch::Tensor& in, const torch::Tensor& c, const torch::Tensor& l) {
    return net->forward(in, c, l);
  };
  torch::optim::Adam opt(net->parameters(), torch::optim::AdamOptions(3e-3));
  double first = 0, last = 0;
  const int max_steps = 400;
  int steps = 0;
  for (; steps < max_steps; ++steps) {
    auto g = at::make_generator<at::CPUGeneratorImpl>(42);
    auto out = objective->forward(denoiser, x, {}, g);
    last = out.loss.item<double>();
    if (steps == 0) first = last;
    if (last < first / 10) break;
    opt.zero_grad();
    out.loss.backward();
    opt.step();
  }
  std::cout << "tiny overfit: loss " << first << " -> " << last << " in " << steps << " steps\n";
  EXPECT_LT(last, first / 10) << "after " << steps << " steps";
}

}  // namespace
}  // namespace vdm

namespace vdm {
namespace {

// On a machine with a CUDA GPU: the presets run on CUDA in float32 and in bf16 and agree with
// the CPU result. Skipped (never faked) where there is no GPU, as in CI.
TEST(ModelsCuda, Float32AndBf16OnCuda) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  torch::manual_seed(0);
  auto net = make_model(model_preset("quickstart", 1, 28));
  {
    torch::NoGradGuard no_grad;
    for (auto& p : net->parameters()) p.add_(0.02 * torch::randn_like(p));
  }
  net->eval();
  torch::NoGradGuard no_grad;
  auto x = images(4, 1, 28);
  auto c = noise_levels(4);
  auto cpu = net->forward(x, c, {});
  net->to(torch::kCUDA);
  auto gpu = net->forward(x.cuda(), c.cuda(), {}).cpu();
  EXPECT_TRUE(torch::allclose(gpu, cpu, 1e-3, 1e-3));
  net->to(torch::kBFloat16);
  auto bf16 = net->forward(x.cuda().to(torch::kBFloat16), c.cuda(), {}).to(torch::kFloat32).cpu();
  EXPECT_TRUE(torch::isfinite(bf16).all().item<bool>());
  EXPECT_LT((bf16 - cpu).abs().mean().item<float>(), 0.05f * cpu.abs().mean().item<float>() + 1e-3f);
}

}  // namespace
}  // namespace vdm
