// The losses: autograd gradients against finite differences (w.r.t. the network output, a toy
// network's weights and the learned schedule), the variance-minimising schedule gradient, a
// Monte-Carlo check that w = 1 gives one expectation under two proposals, and registry errors.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "objectives/diffusion_terms.h"
#include "objectives/objective.h"
#include "tests/test_support.h"

namespace vdm {
namespace {

using testing::RelNear;

// A toy network in float64: out = W + a * input + b * c_noise. W is "the network output" a
// test can perturb entry by entry; a and b make the output depend on z_t and the noise level.
struct Toy {
  torch::Tensor W, a, b;
  explicit Toy(const std::vector<int64_t>& shape) {
    auto g = at::make_generator<at::CPUGeneratorImpl>(11);
    W = (0.1 * at::randn(shape, g, kF64)).requires_grad_(true);
    a = torch::full({}, 0.7, kF64).requires_grad_(true);
    b = torch::full({}, -0.2, kF64).requires_grad_(true);
  }
  Denoiser denoiser() {
    return [this](const torch::Tensor& in, const torch::Tensor& c, const torch::Tensor&) {
      std::vector<int64_t> shape(in.dim(), 1);
      shape[0] = in.size(0);
      return W + a * in + b * c.to(torch::kFloat64).view(shape);
    };
  }
};

torch::Tensor data(int64_t B) {
  auto g = at::make_generator<at::CPUGeneratorImpl>(21);
  auto k = at::randint(0, 256, {B, 1, 4, 4}, g, kF64);
  return 2.0 * (k + 0.5) / 256.0 - 1.0;
}

ObjectiveOptions objective(const std::string& name, int64_t T = 0, const std::string& weighting = "elbo",
                           const std::string& proposal = "schedule", const std::string& param = "eps") {
  ObjectiveOptions o;
  o.name = name;
  o.timesteps = T;
  o.weighting.name = weighting;
  o.proposal.name = proposal;
  o.parameterisation = param;
  return o;
}

ScheduleOptions learned_schedule(bool minimise_variance = false) {
  ScheduleOptions s;
  s.name = "learned";
  s.hidden = 8;
  s.minimise_variance = minimise_variance;
  return s;
}

// The loss with every random draw replayed from the same seed.
double loss_value(ObjectiveImpl& obj, Toy& toy, const torch::Tensor& x, uint64_t seed,
                  bool squared_diffusion = false) {
  torch::NoGradGuard no_grad;
  auto g = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto out = obj.forward(toy.denoiser(), x, {}, g);
  return out.loss.item<double>();
}

void expect_gradient(const char* what, torch::Tensor param, int64_t index, const std::function<double()>& f,
                     double autograd_value) {
  auto flat = param.detach().view({-1});
  const double h = 1e-5, orig = flat[index].item<double>();
  flat[index] = orig + h;
  const double up = f();
  flat[index] = orig - h;
  const double down = f();
  flat[index] = orig;
  const double fd = (up - down) / (2 * h);
  // the absolute floor covers parameters whose true gradient is 0 (the l1 bias cancels in
  // the renormalisation), where the difference quotient is pure rounding
  EXPECT_TRUE(RelNear(autograd_value, fd, 1e-5, 1e-7)) << what << "[" << index << "]";
}

void check_gradients(const ObjectiveOptions& oo, const ScheduleOptions& so) {
  auto obj = make_objective(oo, make_schedule(so));
  const int64_t B = 6;
  auto x = data(B);
  Toy toy({B, 1, 4, 4});
  const uint64_t seed = 1234;
  auto g = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto out = obj->forward(toy.denoiser(), x, {}, g);
  std::vector<torch::Tensor> params = {toy.W, toy.a, toy.b};
  for (auto& p : obj->parameters()) params.push_back(p);
  auto grads = torch::autograd::grad({out.loss}, params, {}, false, false, /*allow_unused=*/true);
  auto f = [&] { return loss_value(*obj, toy, x, seed); };
  const std::string tag = oo.name + "/" + oo.weighting.name + "/" + oo.proposal.name + "/" +
                          oo.parameterisation + "/T=" + std::to_string(oo.timesteps) + "/" + so.name;
  for (int64_t i : {0L, 17L, 95L}) expect_gradient((tag + " W").c_str(), toy.W, i, f, grads[0].view({-1})[i].item<double>());
  expect_gradient((tag + " a").c_str(), toy.a, 0, f, grads[1].item<double>());
  expect_gradient((tag + " b").c_str(), toy.b, 0, f, grads[2].item<double>());
  auto named = obj->named_parameters();
  for (size_t k = 0; k < named.size(); ++k) {
    auto grad = grads[3 + k];
    const double gv = grad.defined() ? grad.view({-1})[0].item<double>() : 0.0;
    expect_gradient((tag + " " + named[k].key()).c_str(), named[k].value(), 0, f, gv);
  }
}

TEST(Objective, GradientsMatchFiniteDifferences) {
  check_gradients(objective("vlb"), learned_schedule());
  check_gradients(objective("vlb", 10), learned_schedule());
  check_gradients(objective("vlb"), ScheduleOptions{});
  check_gradients(objective("eps_mse"), ScheduleOptions{});
  check_gradients(objective("weighted", 0, "sigmoid"), ScheduleOptions{});
  check_gradients(objective("weighted", 0, "edm", "edm_lognormal", "F"), ScheduleOptions{});
  check_gradients(objective("weighted", 0, "v_mse", "schedule", "v"), ScheduleOptions{});
  check_gradients(objective("weighted", 0, "iddpm", "adaptive", "x"), ScheduleOptions{});
}

// With minimise_variance, the schedule's interior follows d/d(eta) mean(l^2) (l: diffusion loss
// per example per dimension) while the endpoints and the network keep the VLB gradient.
TEST(Objective, VarianceMinimisingScheduleGradient) {
  auto obj = make_objective(objective("vlb"), make_schedule(learned_schedule(true)));
  const int64_t B = 6, D = 16;
  auto x = data(B);
  Toy toy({B, 1, 4, 4});
  const uint64_t seed = 77;
  auto g = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto out = obj->forward(toy.denoiser(), x, {}, g);
  auto named = obj->named_parameters();
  std::vector<torch::Tensor> params;
  for (auto& p : named) params.push_back(p.value());
  params.push_back(toy.a);
  auto grads = torch::autograd::grad({out.loss}, params);

  auto second_moment = [&] {
    torch::NoGradGuard no_grad;
    auto gg = at::make_generator<at::CPUGeneratorImpl>(seed);
    auto s = obj->proposal().sample(B, gg, {});
    // Replay the forward's draws: proposal first, then eps inside diffuse_and_denoise.
    auto gamma = s.schedule.gamma;
    auto alpha = torch::sqrt(torch::sigmoid(-gamma)).view({B, 1, 1, 1});
    auto sigma = torch::sqrt(torch::sigmoid(gamma)).view({B, 1, 1, 1});
    auto eps = at::randn(x.sizes(), gg, kF64);
    auto z = alpha * x + sigma * eps;
    auto eps_hat = toy.denoiser()(z, noise_conditioning(gamma, torch::kFloat64), {});
    auto l = 0.5 * s.schedule.dgamma_dt * squared_error(eps_hat, eps) / double(D);
    return (l * l).mean().item<double>();
  };
  auto plain = [&] { return loss_value(*obj, toy, x, seed); };
  for (size_t k = 0; k < named.size(); ++k) {
    const bool endpoint = named[k].key().find("gamma_") != std::string::npos;
    expect_gradient(named[k].key().c_str(), named[k].value(), 0, endpoint ? std::function<double()>(plain) : second_moment,
                    grads[k].view({-1})[0].item<double>());
  }
  expect_gradient("a", toy.a, 0, plain, grads.back().item<double>());
}

// The weighted loss with w = 1 estimates the same integral under any proposal that covers the
// same lambda range; here the linear and the cosine schedule, against quadrature.
TEST(Objective, ElboWeightingIsProposalInvariant) {
  const int64_t B = 64, rounds = 150;
  auto x = data(B);
  // eps_hat = 0.5 z: E||eps_hat - eps||^2 per example = sum_d (0.25 alpha^2 x^2 + (0.5 sigma - 1)^2)
  Denoiser half = [](const torch::Tensor& in, const torch::Tensor&, const torch::Tensor&) { return 0.5 * in; };
  auto lambda = torch::linspace(-5.0, 13.3, 200001, kF64);
  auto a2 = torch::sigmoid(lambda), s2 = torch::sigmoid(-lambda);
  const double sx2 = (x * x).sum().item<double>() / B, D = 16;
  auto integrand = 0.5 * (0.25 * a2 * sx2 + D * torch::square(0.5 * torch::sqrt(s2) - 1.0));
  const double exact = torch::trapezoid(integrand, lambda).item<double>();

  std::vector<double> means, errors;
  for (const char* schedule : {"linear", "cosine"}) {
    ScheduleOptions so;
    so.name = schedule;
    auto obj = make_objective(objective("weighted"), make_schedule(so));
    auto g = at::make_generator<at::CPUGeneratorImpl>(99);
    std::vector<double> samples;
    torch::NoGradGuard no_grad;
    for (int r = 0; r < rounds; ++r) {
      auto ps = obj->forward(half, x, {}, g).per_sample;
      for (int64_t i = 0; i < B; ++i) samples.push_back(ps[i].item<double>());
    }
    double m = 0, v = 0;
    for (double s : samples) m += s;
    m /= samples.size();
    for (double s : samples) v += (s - m) * (s - m);
    // antithetic draws are negatively correlated within a batch, so the iid standard error
    // is conservative
    const double se = std::sqrt(v / (samples.size() - 1) / samples.size());
    EXPECT_LT(std::abs(m - exact), 4 * se) << schedule << ": mean " << m << " vs " << exact;
    means.push_back(m);
    errors.push_back(se);
  }
  EXPECT_LT(std::abs(means[0] - means[1]), 4 * std::hypot(errors[0], errors[1]));
  // and the weighted ELBO loss is exactly the VLB's diffusion term on the same draws
  auto vlb = make_objective(objective("vlb"), make_schedule(ScheduleOptions{}));
  auto wtd = make_objective(objective("weighted"), make_schedule(ScheduleOptions{}));
  auto g1 = at::make_generator<at::CPUGeneratorImpl>(5), g2 = at::make_generator<at::CPUGeneratorImpl>(5);
  torch::NoGradGuard no_grad;
  auto a = vlb->forward(half, x, {}, g1), b = wtd->forward(half, x, {}, g2);
  EXPECT_NEAR(a.terms.at("diffusion").item<double>(), b.terms.at("diffusion").item<double>(), 1e-9);
}

TEST(Objective, VlbTermsAndUnits) {
  auto obj = make_objective(objective("vlb"), make_schedule(ScheduleOptions{}));
  auto x = data(4);
  Toy toy({4, 1, 4, 4});
  auto g = at::make_generator<at::CPUGeneratorImpl>(3);
  torch::NoGradGuard no_grad;
  auto out = obj->forward(toy.denoiser(), x, {}, g);
  ASSERT_EQ(out.terms.size(), 3u);
  const double total = out.terms.at("diffusion").item<double>() + out.terms.at("prior").item<double>() +
                       out.terms.at("reconstruction").item<double>();
  EXPECT_NEAR(total, out.per_sample.mean().item<double>(), 1e-9);
  EXPECT_NEAR(out.loss.item<double>(), total / 16.0, 1e-12);
  EXPECT_NEAR(out.bpd_per_nat, bpd_per_nat(16), 1e-15);
  const double prior = prior_kl(x, torch::tensor({5.0}, kF64)).sum().item<double>() / 4;
  EXPECT_NEAR(out.terms.at("prior").item<double>(), prior, 1e-12);
  EXPECT_EQ(out.per_sample.sizes(), torch::IntArrayRef({4}));
}

TEST(Objective, EpsMseImpliedWeighting) {
  ScheduleOptions lin, cos;
  cos.name = "cosine";
  auto a = make_objective(objective("eps_mse"), make_schedule(lin));
  auto b = make_objective(objective("eps_mse"), make_schedule(cos));
  EXPECT_TRUE(a->monotone());   // L_simple under the linear schedule is an ELBO (up to 2/18.3)
  EXPECT_FALSE(b->monotone());  // under the cosine schedule it is the IDDPM sech weighting
  auto w = a->weighting(torch::tensor({0.0}, kF64));
  EXPECT_NEAR(w.item<double>(), 2.0 / 18.3, 1e-12);
}

TEST(Objective, FloatDataKeepsItsDtype) {
  auto obj = make_objective(objective("vlb"), make_schedule(ScheduleOptions{}));
  auto x = data(4).to(torch::kFloat32);
  Denoiser zero = [](const torch::Tensor& in, const torch::Tensor&, const torch::Tensor&) {
    EXPECT_EQ(in.scalar_type(), torch::kFloat32);
    return torch::zeros_like(in);
  };
  auto g = at::make_generator<at::CPUGeneratorImpl>(3);
  auto out = obj->forward(zero, x, {}, g);
  EXPECT_TRUE(std::isfinite(out.loss.item<double>()));
}

TEST(Objective, RegistryErrors) {
  auto s = make_schedule(ScheduleOptions{});
  EXPECT_THROW(make_objective(objective("elbo"), s), std::invalid_argument);
  EXPECT_THROW(make_objective(objective("vlb", 0, "elbo", "adaptive"), s), std::invalid_argument);
  EXPECT_THROW(make_objective(objective("eps_mse", 0, "elbo", "edm_lognormal"), s), std::invalid_argument);
  EXPECT_THROW(make_objective(objective("vlb", 10), make_schedule(learned_schedule(true))), std::invalid_argument);
  // The weighted loss is a continuous-time integral: on a T-step grid it would be a biased sum.
  EXPECT_THROW(make_objective(objective("weighted", 10, "sigmoid"), s), std::invalid_argument);
  EXPECT_NO_THROW(make_objective(objective("vlb", 10), s));
  Denoiser bad = [](const torch::Tensor& in, const torch::Tensor&, const torch::Tensor&) { return in.sum(1); };
  auto obj = make_objective(objective("vlb"), s);
  auto g = at::make_generator<at::CPUGeneratorImpl>(3);
  EXPECT_THROW(obj->forward(bad, data(2), {}, g), std::runtime_error);
}

// On a CUDA device: noise levels come from a CPU generator and the diffusion noise from the one
// given, so with one CPU generator for both a CUDA loss equals the CPU loss; every gradient
// lands on the device, and a CUDA noise generator gives a finite loss. Skipped without CUDA.
TEST(ObjectiveCuda, SameLossAsCpuAndGradientsOnDevice) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const torch::Device cuda(torch::kCUDA, 0);
  ScheduleOptions cosine;
  cosine.name = "cosine";
  const std::vector<std::pair<ObjectiveOptions, ScheduleOptions>> cases = {
      {objective("vlb"), learned_schedule()},
      {objective("vlb", 10), learned_schedule()},
      {objective("eps_mse"), cosine},
      {objective("weighted", 0, "sigmoid", "adaptive"), cosine},
      {objective("weighted", 0, "edm", "edm_lognormal", "F"), cosine}};
  for (const auto& [oo, so] : cases) {
    SCOPED_TRACE(oo.name + " T=" + std::to_string(oo.timesteps) + " " + oo.proposal.name);
    auto on_cpu = make_objective(oo, make_schedule(so));
    auto on_gpu = make_objective(oo, make_schedule(so));
    on_gpu->to(cuda);
    const auto x = data(8);
    Toy cpu_net(x.sizes().vec()), gpu_net(x.sizes().vec());
    for (auto* t : {&gpu_net.W, &gpu_net.a, &gpu_net.b}) *t = t->detach().to(cuda).requires_grad_(true);

    auto g1 = at::make_generator<at::CPUGeneratorImpl>(5), g2 = at::make_generator<at::CPUGeneratorImpl>(5);
    const double want = on_cpu->forward(cpu_net.denoiser(), x, {}, g1).loss.item<double>();
    auto out = on_gpu->forward(gpu_net.denoiser(), x.to(cuda), {}, g2);
    EXPECT_TRUE(out.loss.device().is_cuda());
    EXPECT_TRUE(RelNear(out.loss.item<double>(), want, 1e-9));
    out.loss.backward();
    EXPECT_TRUE(gpu_net.W.grad().device().is_cuda());
    for (const auto& p : on_gpu->parameters())
      if (p.grad().defined()) EXPECT_TRUE(p.grad().device().is_cuda());

    auto levels = at::make_generator<at::CPUGeneratorImpl>(6);
    auto noise = at::globalContext().defaultGenerator(cuda);
    auto drawn = on_gpu->forward(gpu_net.denoiser(), x.to(cuda), {}, LossRng{levels, noise});
    EXPECT_TRUE(std::isfinite(drawn.loss.item<double>()));
    EXPECT_THROW(on_gpu->forward(gpu_net.denoiser(), x.to(cuda), {}, LossRng{noise, noise}),
                 std::invalid_argument);
  }
}

}  // namespace
}  // namespace vdm
