// Fused GroupNorm + per-image affine + SiLU on the CPU, forward and backward (see group_norm_silu.h).
#include "models/group_norm_silu.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

namespace vdm {
namespace {

// The kernels, twice: for AVX2 with FMA (one instruction per multiply-add) and for the
// x86-64 baseline. Chosen by CPU feature, since GCC's target_clones would pick an
// "arch=haswell" clone on that exact CPU model only.
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
#include "models/group_norm_silu_kernels.inc"
}  // namespace avx2
#pragma GCC pop_options
namespace baseline {
#include "models/group_norm_silu_kernels.inc"
}  // namespace baseline

struct Kernels {
  decltype(&baseline::row_moments) row_moments;
  decltype(&baseline::nhwc_moments) nhwc_moments;
  decltype(&baseline::nchw_apply) nchw_apply;
  decltype(&baseline::nhwc_apply) nhwc_apply;
  decltype(&baseline::nchw_grad_sums) nchw_grad_sums;
  decltype(&baseline::nhwc_grad_sums) nhwc_grad_sums;
  decltype(&baseline::nchw_grad_input) nchw_grad_input;
  decltype(&baseline::nhwc_grad_input) nhwc_grad_input;
};
#define VDM_KERNEL_SET(ns)                                                                          \
  Kernels {                                                                                         \
    &ns::row_moments, &ns::nhwc_moments, &ns::nchw_apply, &ns::nhwc_apply, &ns::nchw_grad_sums,     \
        &ns::nhwc_grad_sums, &ns::nchw_grad_input, &ns::nhwc_grad_input                             \
  }

std::atomic<bool> force_baseline{false};

const Kernels& kernels() {
  static const Kernels avx2_set = VDM_KERNEL_SET(avx2), baseline_set = VDM_KERNEL_SET(baseline);
  static const bool has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has_avx2 && !force_baseline.load(std::memory_order_relaxed) ? avx2_set : baseline_set;
}
#undef VDM_KERNEL_SET

// The shape of one call and, per image, its float coefficients: z = a x + b per channel, with
// a = rstd A and b = B - mean rstd A from the group statistics (double) and the affine maps.
struct Problem {
  int64_t N, C, HW, G, cg;
  bool nhwc, silu;
  Problem(const torch::Tensor& x, int64_t groups, bool silu_)
      : N(x.size(0)), C(x.size(1)), HW(x.size(2) * x.size(3)), G(groups), cg(x.size(1) / groups), silu(silu_) {
    nhwc = !x.is_contiguous();
  }
};

struct Scratch {  // per image, C rounded up to 8 lanes
  std::vector<float> a, b, mean, p, q, r, shift, s1, s2;
  std::vector<double> d1, d2;
  explicit Scratch(int64_t C) {
    const size_t n = size_t((C + 7) & ~7);
    for (auto* v : {&a, &b, &mean, &p, &q, &r, &shift, &s1, &s2}) v->assign(n, 0.0f);
    d1.assign(n, 0.0);
    d2.assign(n, 0.0);
  }
  // For every channel, or for group g's only.
  void coefficients(const Problem& P, int64_t n, const float* A, const float* B, const double* mean_g,
                    const double* rstd_g, int64_t g = -1) {
    const int64_t c0 = g < 0 ? 0 : g * P.cg, c1 = g < 0 ? P.C : (g + 1) * P.cg;
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t ng = n * P.G + c / P.cg;
      const double scale = rstd_g[ng] * double(A[n * P.C + c]);
      a[c] = float(scale);
      b[c] = float(double(B[n * P.C + c]) - mean_g[ng] * scale);
      mean[c] = float(mean_g[ng]);
    }
  }
};

// Chan et al.'s pairwise combination of the channels' moments (d1: means, d2: sums of squared
// deviations over HW values each) into group g's mean and 1/sqrt(variance + eps).
void group_moments(const Problem& P, const Scratch& s, int64_t g, double eps, double* mean_out, double* rstd_out) {
  double mean = 0, m2 = 0;
  for (int64_t c = g * P.cg; c < (g + 1) * P.cg; ++c) mean += s.d1[c];
  mean /= double(P.cg);
  for (int64_t c = g * P.cg; c < (g + 1) * P.cg; ++c) m2 += s.d2[c] + double(P.HW) * (s.d1[c] - mean) * (s.d1[c] - mean);
  *mean_out = mean;
  *rstd_out = 1.0 / std::sqrt(std::max(m2 / double(P.cg * P.HW), 0.0) + eps);
}

// NCHW works group by group, so that a group's rows are still in cache for the second pass;
// NHWC interleaves the groups in every row and so works image by image.
std::vector<torch::Tensor> forward_kernel(const torch::Tensor& x, const torch::Tensor& A, const torch::Tensor& B,
                                          int64_t groups, double eps, bool silu) {
  const Problem P(x, groups, silu);
  const Kernels& k = kernels();
  auto y = torch::empty_like(x, x.options().memory_format(P.nhwc ? torch::MemoryFormat::ChannelsLast
                                                                 : torch::MemoryFormat::Contiguous));
  auto mean_t = torch::empty({P.N, P.G}, x.options().dtype(torch::kFloat64));
  auto rstd_t = torch::empty_like(mean_t);
  const float* xp = x.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  const float *Ap = A.data_ptr<float>(), *Bp = B.data_ptr<float>();
  double *mean_g = mean_t.data_ptr<double>(), *rstd_g = rstd_t.data_ptr<double>();
  at::parallel_for(0, P.N, 1, [&](int64_t begin, int64_t end) {
    Scratch s(P.C);
    for (int64_t n = begin; n < end; ++n) {
      const float* xn = xp + n * P.C * P.HW;
      float* yn = yp + n * P.C * P.HW;
      if (P.nhwc) {
        k.nhwc_moments(xn, P.HW, P.C, s.shift.data(), s.s1.data(), s.s2.data(), s.d1.data(), s.d2.data());
        for (int64_t g = 0; g < P.G; ++g) group_moments(P, s, g, eps, &mean_g[n * P.G + g], &rstd_g[n * P.G + g]);
        s.coefficients(P, n, Ap, Bp, mean_g, rstd_g);
        k.nhwc_apply(xn, yn, P.HW, P.C, s.a.data(), s.b.data(), silu);
        continue;
      }
      for (int64_t g = 0; g < P.G; ++g) {
        for (int64_t c = g * P.cg; c < (g + 1) * P.cg; ++c) k.row_moments(xn + c * P.HW, P.HW, &s.d1[c], &s.d2[c]);
        group_moments(P, s, g, eps, &mean_g[n * P.G + g], &rstd_g[n * P.G + g]);
        s.coefficients(P, n, Ap, Bp, mean_g, rstd_g, g);
        for (int64_t c = g * P.cg; c < (g + 1) * P.cg; ++c)
          k.nchw_apply(xn + c * P.HW, yn + c * P.HW, P.HW, s.a[c], s.b[c], silu);
      }
    }
  });
  return {y, mean_t, rstd_t};
}

// dL/dx, dL/dA, dL/dB. With xhat = (x - mean) rstd and z = A xhat + B per channel:
//   dB = sum g, dA = rstd sum g (x - mean), and over a group of M = cg*HW values
//   dx = rstd (A g - m1 - xhat m2), m1 = sum_c A dB / M, m2 = sum_c A dA / M,
// which is p g + q x + r per channel. The first pass leaves g in dx's memory; the second
// turns it into dx in place, so the activation's exp runs once per value.
std::vector<torch::Tensor> backward_kernel(const torch::Tensor& dy_in, const torch::Tensor& x, const torch::Tensor& A,
                                           const torch::Tensor& B, const torch::Tensor& mean_t,
                                           const torch::Tensor& rstd_t, int64_t groups, bool silu) {
  const Problem P(x, groups, silu);
  const Kernels& k = kernels();
  const auto format = P.nhwc ? torch::MemoryFormat::ChannelsLast : torch::MemoryFormat::Contiguous;
  const auto dy = dy_in.contiguous(format);
  auto dx = torch::empty_like(x, x.options().memory_format(format));
  auto dA = torch::empty({P.N, P.C}, x.options());
  auto dB = torch::empty({P.N, P.C}, x.options());
  const float *xp = x.data_ptr<float>(), *dyp = dy.data_ptr<float>();
  float *dxp = dx.data_ptr<float>(), *dAp = dA.data_ptr<float>(), *dBp = dB.data_ptr<float>();
  const float *Ap = A.data_ptr<float>(), *Bp = B.data_ptr<float>();
  const double *mean_g = mean_t.data_ptr<double>(), *rstd_g = rstd_t.data_ptr<double>();
  const double M = double(P.cg * P.HW);
  auto finish_group = [&](Scratch& s, int64_t n, int64_t g) {  // dA, dB and p, q, r of group g
    const double rstd = rstd_g[n * P.G + g], mean = mean_g[n * P.G + g];
    double m1 = 0, m2 = 0;
    for (int64_t c = g * P.cg; c < (g + 1) * P.cg; ++c) {
      const double Ac = Ap[n * P.C + c], dAc = rstd * s.d2[c];
      dBp[n * P.C + c] = float(s.d1[c]);
      dAp[n * P.C + c] = float(dAc);
      m1 += Ac * s.d1[c];
      m2 += Ac * dAc;
    }
    m1 /= M;
    m2 /= M;
    for (int64_t c = g * P.cg; c < (g + 1) * P.cg; ++c) {
      s.p[c] = float(rstd * Ap[n * P.C + c]);
      s.q[c] = float(-rstd * rstd * m2);
      s.r[c] = float(rstd * (mean * rstd * m2 - m1));
    }
  };
  at::parallel_for(0, P.N, 1, [&](int64_t begin, int64_t end) {
    Scratch s(P.C);
    for (int64_t n = begin; n < end; ++n) {
      const int64_t o = n * P.C * P.HW;
      if (P.nhwc) {
        s.coefficients(P, n, Ap, Bp, mean_g, rstd_g);
        k.nhwc_grad_sums(xp + o, dyp + o, dxp + o, P.HW, P.C, s.a.data(), s.b.data(), s.mean.data(), silu,
                         s.s1.data(), s.s2.data(), s.d1.data(), s.d2.data());
        for (int64_t g = 0; g < P.G; ++g) finish_group(s, n, g);
        k.nhwc_grad_input(xp + o, dxp + o, P.HW, P.C, s.p.data(), s.q.data(), s.r.data());
        continue;
      }
      for (int64_t g = 0; g < P.G; ++g) {
        s.coefficients(P, n, Ap, Bp, mean_g, rstd_g, g);
        for (int64_t c = g * P.cg; c < (g + 1) * P.cg; ++c) {
          const int64_t row = o + c * P.HW;
          k.nchw_grad_sums(xp + row, dyp + row, dxp + row, P.HW, s.a[c], s.b[c], s.mean[c], silu, &s.d1[c], &s.d2[c]);
        }
        finish_group(s, n, g);
        for (int64_t c = g * P.cg; c < (g + 1) * P.cg; ++c)
          k.nchw_grad_input(xp + o + c * P.HW, dxp + o + c * P.HW, P.HW, s.p[c], s.q[c], s.r[c]);
      }
    }
  });
  return {dx, dA, dB};
}

struct GroupNormSiluFunction : torch::autograd::Function<GroupNormSiluFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& scale, const torch::Tensor& shift, int64_t groups, double eps,
                               bool silu) {
    const auto A = scale.contiguous(), B = shift.contiguous();
    auto out = forward_kernel(x, A, B, groups, eps, silu);
    ctx->save_for_backward({x, A, B, out[1], out[2]});
    ctx->saved_data["groups"] = groups;
    ctx->saved_data["silu"] = silu;
    return out[0];
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    auto g = backward_kernel(grads[0], saved[0], saved[1], saved[2], saved[3], saved[4],
                             ctx->saved_data["groups"].toInt(), ctx->saved_data["silu"].toBool());
    return {g[0], g[1], g[2], torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

void group_norm_silu_force_baseline(bool on) { force_baseline = on; }

bool group_norm_silu_supported(const torch::Tensor& x) {
  return x.defined() && x.device().is_cpu() && x.scalar_type() == torch::kFloat32 && x.dim() == 4 &&
         x.numel() > 0 && (x.is_contiguous() || x.is_contiguous(torch::MemoryFormat::ChannelsLast));
}

torch::Tensor group_norm_silu(const torch::Tensor& x, const torch::Tensor& scale, const torch::Tensor& shift,
                              const GroupNormSiluOptions& o) {
  TORCH_CHECK(group_norm_silu_supported(x), "group_norm_silu: needs a float32 4-d CPU tensor in NCHW or NHWC, got ",
              x.sizes(), " ", x.scalar_type(), " on ", x.device());
  TORCH_CHECK(o.groups > 0 && x.size(1) % o.groups == 0, "group_norm_silu: ", x.size(1),
              " channels do not split into ", o.groups, " groups");
  const std::vector<int64_t> nc{x.size(0), x.size(1)};
  TORCH_CHECK(scale.sizes() == nc && shift.sizes() == nc, "group_norm_silu: scale and shift must be [N, C] = ",
              nc, ", got ", scale.sizes(), " and ", shift.sizes());
  TORCH_CHECK(scale.scalar_type() == torch::kFloat32 && shift.scalar_type() == torch::kFloat32,
              "group_norm_silu: scale and shift must be float32");
  return GroupNormSiluFunction::apply(x, scale, shift, o.groups, o.eps, o.silu);
}

}  // namespace vdm
