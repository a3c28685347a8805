// Forward+backward throughput (img/s) of every model preset through the real training path
// (eps-MSE objective, autograd), in fp32, channels-last and bf16 autocast (the trainer's
// train.channels_last and train.bf16), with torch's intra-op threads taken from a config's
// train.threads. Usage: model_throughput [--config=FILE] [--benchmark_* flags].
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <cstring>
#include <iostream>
#include <string>
#include <utility>

#include "launch/config.h"
#include "models/model_presets.h"
#include "objectives/objective.h"
#include "training/autocast.h"

namespace {

struct Case {
  const char* preset;
  int64_t channels, resolution, classes, batch, iterations;
};

enum class Mode { Fp32, ChannelsLast, Bf16 };

void run(benchmark::State& state, Case c, Mode mode) {
  torch::manual_seed(0);
  auto net = vdm::make_model(vdm::model_preset(c.preset, c.channels, c.resolution, c.classes));
  vdm::ObjectiveOptions oo;
  oo.name = "eps_mse";
  auto objective = vdm::make_objective(oo, vdm::make_schedule(vdm::ScheduleOptions{}));
  auto x = torch::rand({c.batch, c.channels, c.resolution, c.resolution}) * 2 - 1;
  auto labels = c.classes ? torch::randint(0, c.classes, {c.batch}, torch::kLong) : torch::Tensor();
  const bool nhwc = mode == Mode::ChannelsLast, bf16 = mode == Mode::Bf16;
  net->set_channels_last(nhwc);
  vdm::Denoiser denoiser = [&](const torch::Tensor& in, const torch::Tensor& cn, const torch::Tensor& l) {
    vdm::AutocastScope autocast(c10::kCPU, bf16);
    return net->forward(nhwc ? in.contiguous(torch::MemoryFormat::ChannelsLast) : in, cn, l);
  };
  auto gen = at::make_generator<at::CPUGeneratorImpl>(0);
  for (auto _ : state) {
    auto out = objective->forward(denoiser, x, labels, gen);
    out.loss.backward();
    for (auto& p : net->parameters()) p.mutable_grad() = torch::Tensor();
  }
  state.counters["img/s"] = benchmark::Counter(double(c.batch), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GFLOP/img"] = net->flops_per_image() / 1e9;
  state.counters["params_M"] = double(net->parameter_count()) / 1e6;
  state.counters["threads"] = torch::get_num_threads();
}

}  // namespace

int main(int argc, char** argv) {
  std::string config = "configs/quickstart.yaml";
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], "--config=", 9) == 0) config = argv[i] + 9;
  try {
    torch::set_num_threads(int(vdm::load_config(config).train.threads));
  } catch (const std::exception& e) {
    std::cerr << "model_throughput: " << e.what() << "\n";
    return 2;
  }
  for (const Case& c : {Case{"tiny", 1, 16, 0, 64, 20}, Case{"quickstart", 1, 28, 10, 64, 5},
                        Case{"cifar10_vdm", 3, 32, 0, 4, 2}, Case{"imagenet64_adm", 3, 64, 1000, 1, 1}})
    for (auto [mode, suffix] : {std::pair{Mode::Fp32, ""}, std::pair{Mode::ChannelsLast, "/channels_last"},
                                std::pair{Mode::Bf16, "/bf16"}})
      benchmark::RegisterBenchmark((std::string(c.preset) + suffix).c_str(), run, c, mode)
          ->Iterations(c.iterations)
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  return 0;
}
