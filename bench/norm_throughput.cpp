// GroupNorm + FiLM scale-shift + SiLU, forward and backward, as LibTorch's ops (what the
// U-Nets ran before) against vdm::group_norm_silu, in NCHW and channels-last, on the shapes of
// the quickstart and cifar10_vdm presets, on one thread. Usage: norm_throughput [--benchmark_*].
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include "models/group_norm_silu.h"

namespace {

struct Shape {
  int64_t n, c, hw;
};

void run(benchmark::State& state, Shape s, bool fused, bool nhwc) {
  torch::set_num_threads(1);
  torch::manual_seed(0);
  auto x = torch::randn({s.n, s.c, s.hw, s.hw});
  if (nhwc) x = x.contiguous(torch::MemoryFormat::ChannelsLast);
  x.requires_grad_(true);
  const auto weight = torch::ones({s.c}, torch::requires_grad()), bias = torch::zeros({s.c}, torch::requires_grad());
  const auto film = torch::randn({s.n, 2 * s.c}, torch::requires_grad());
  auto dy = torch::randn_like(x);
  const int64_t groups = 32;
  for (auto _ : state) {
    const auto parts = film.chunk(2, 1);
    torch::Tensor y;
    if (fused) {
      const auto scale = weight * (1 + parts[0]);
      const auto shift = torch::addcmul(parts[1], bias.expand({s.n, s.c}), 1 + parts[0]);
      y = vdm::group_norm_silu(x, scale, shift, {groups, 1e-6, true});
    } else {
      auto h = torch::group_norm(x, groups, weight, bias, 1e-6);
      y = torch::silu(torch::addcmul(parts[1].unsqueeze(-1).unsqueeze(-1), h, 1 + parts[0].unsqueeze(-1).unsqueeze(-1)));
    }
    y.backward(dy);
    x.mutable_grad() = torch::Tensor();
  }
  state.counters["MB/s"] = benchmark::Counter(double(x.numel()) * 4 / 1e6, benchmark::Counter::kIsIterationInvariantRate);
}

const Shape kShapes[] = {{64, 32, 16}, {64, 64, 8}, {64, 128, 4}, {4, 128, 32}, {4, 256, 32}};

int register_all() {
  for (const auto& s : kShapes)
    for (bool nhwc : {false, true})
      for (bool fused : {false, true}) {
        const std::string name = std::string(fused ? "fused" : "libtorch") + (nhwc ? "/nhwc/" : "/nchw/") +
                                 std::to_string(s.n) + "x" + std::to_string(s.c) + "x" + std::to_string(s.hw) +
                                 "x" + std::to_string(s.hw);
        benchmark::RegisterBenchmark(name.c_str(), run, s, fused, nhwc)->Unit(benchmark::kMicrosecond);
      }
  return 0;
}
const int registered = register_all();

}  // namespace

BENCHMARK_MAIN();
