// A small but complete training state for checkpoint tests (unit and multi-rank): the tiny U-Net
// with 4-d weights in channels-last layout, a learned schedule with the adaptive proposal, AdamW
// over both, the EMA and the RNG streams, advanced by real optimiser steps so that every part of
// a checkpoint changes from one step to the next.
#pragma once

#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "models/ema.h"
#include "models/model_presets.h"
#include "objectives/objective.h"
#include "training/train_state.h"
#include "training/trained_model.h"

namespace vdm::testing {

struct TrainStateFixture {
  DenoiserNet model;
  Objective objective;
  Ema ema{nullptr};
  std::unique_ptr<torch::optim::AdamW> optimizer;
  RngStreams rng;
  TrainCounters counters;

  explicit TrainStateFixture(uint64_t seed = 3) {
    torch::manual_seed(int64_t(seed));
    ScheduleOptions so;
    so.name = "learned";
    so.hidden = 8;
    ObjectiveOptions oo;
    oo.name = "weighted";  // the adaptive proposal needs a weighted loss
    oo.proposal.name = "adaptive";
    oo.proposal.bins = 8;
    Network net = build_network(model_preset("tiny", 1, 8), so, oo);
    model = net.model;
    objective = net.objective;
    {
      torch::NoGradGuard no_grad;
      for (auto& p : model->parameters())
        if (p.dim() == 4) p.set_data(p.contiguous(torch::MemoryFormat::ChannelsLast));
    }
    ema = Ema(*model, EmaOptions{});
    std::vector<torch::Tensor> params = model->parameters();
    for (const auto& p : objective->parameters()) params.push_back(p);
    optimizer = std::make_unique<torch::optim::AdamW>(
        params, torch::optim::AdamWOptions(1e-2).betas({0.9, 0.99}).weight_decay(0.01));
    rng = RngStreams(seed, 0, c10::kCPU);
  }

  // One optimiser step on a random batch: weights, moments, EMA, schedule, proposal statistics
  // and the RNG streams all move.
  void step() {
    auto x = torch::rand({4, 1, 8, 8}, rng.noise) * 2 - 1;
    Denoiser denoiser = [&](const torch::Tensor& in, const torch::Tensor& c, const torch::Tensor& l) {
      return model->forward(in, c, l);
    };
    auto out = objective->forward(denoiser, x, {}, LossRng{rng.levels, rng.noise});
    optimizer->zero_grad();
    out.loss.backward();
    optimizer->step();
    auto& proposal = objective->proposal();
    const auto pending = proposal.pending_histogram();
    if (pending.defined()) proposal.commit(pending);
    counters.step += 1;
    ema->update(*model, counters.step);
  }

  TrainStateRefs refs() { return {*model, *ema, *objective, *optimizer, rng, c10::kCPU}; }
  TrainStateInfo info() const {
    TrainStateInfo i;
    i.counters = counters;
    i.sampler.epoch = 1;
    i.sampler.consumed = 4 * counters.step;
    return i;
  }
};

inline std::string file_bytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Every file of a checkpoint folder, name -> bytes.
inline std::map<std::string, std::string> folder_files(const std::filesystem::path& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) out[e.path().filename().string()] = file_bytes(e.path());
  return out;
}

}  // namespace vdm::testing
