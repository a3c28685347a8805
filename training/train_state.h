// What a training checkpoint holds and how it is encoded: model, EMA, objective (the learned
// schedule), optimiser, proposal statistics, every rank's RNG states, counters, sampler position,
// world size and the resolved config, as named files for the CheckpointStore.
#pragma once

#include <ATen/core/Generator.h>
#include <c10/core/Device.h>
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "data/distributed_sampler.h"
#include "training/checkpoint_store.h"

namespace torch::nn {
class Module;
}
namespace torch::optim {
class Optimizer;
}

namespace vdm {

class ObjectiveImpl;
class EmaImpl;

// A seed for one purpose ("init", "noise", "dropout", ...) and index (rank, step), so that the
// streams of different purposes and ranks never overlap by accident.
uint64_t derive_seed(uint64_t seed, uint64_t index, const char* purpose);

// The per-rank random streams of training, seeded from (seed, rank): diffusion noise
// (`noise`, on the training device), noise levels (`levels`, always a CPU generator; on a CPU
// run the same generator as `noise`), and LibTorch's default generators (dropout; on CUDA the
// device's default generator, which is `noise`).
struct RngStreams {
  RngStreams() = default;
  RngStreams(uint64_t seed, int64_t rank, c10::Device device);
  at::Generator noise;
  at::Generator levels;
  // Every generator's state as one uint8 tensor (equal size on every rank, for all_gather).
  torch::Tensor state() const;
  void load(const torch::Tensor& state);
};

struct TrainCounters {
  int64_t step = 0;              // optimiser steps taken (skipped non-finite ones included)
  int64_t skipped_steps = 0;     // non-finite steps, in all
  int64_t nonfinite_in_row = 0;
};

struct TrainStateInfo {
  TrainCounters counters;
  SamplerState sampler;
  int64_t world = 1;
};

struct TrainStateRefs {
  torch::nn::Module& model;
  EmaImpl& ema;
  ObjectiveImpl& objective;
  torch::optim::Optimizer& optimizer;
  RngStreams& rng;
  c10::Device device = c10::kCPU;  // where model, EMA, objective and optimiser state live
};

// Loads checkpoint file `name` (model.pt, ema.pt, objective.pt) into module, whose tensors are on
// `device`; the file's tensors are read onto it, whatever device wrote them. Throws
// std::runtime_error naming the file when it is missing or its tensors do not fit the module.
void load_module(torch::nn::Module& module, const LoadedCheckpoint& checkpoint, const std::string& name,
                 c10::Device device);

// A copy of everything a checkpoint holds, in host memory that training does not touch, so that
// it can be encoded and written on another thread while training goes on. Tensors are copied
// storage by storage (views keep their offsets and strides, shared storages stay shared) with
// their requires_grad flags, into modules and an optimiser of the same structure, so that the
// encoded files are byte for byte what encoding the live state would give (but for the device
// that a CUDA tensor's storage is labelled with: the copies are CPU tensors, and loading reads
// every tensor onto the device it names anyway).
struct TrainStateSnapshot {
  std::shared_ptr<torch::nn::Module> model, ema, objective;
  // AdamW: a copy whose state holds the copied moments and whose parameter groups name the live
  // parameters (only their addresses are written, as the optimiser's keys). Another optimiser
  // type is encoded on the step instead, into optimizer_bytes.
  std::shared_ptr<torch::optim::Optimizer> optimizer;
  std::string optimizer_bytes;
  std::vector<torch::Tensor> proposal;  // the proposal's state
  torch::Tensor rng_all;                // [world, bytes], every rank's RngStreams::state()
  TrainStateInfo info;
  std::string config_text;
  int64_t host_bytes = 0;  // host memory the copied tensors take
};

// On the step: copies refs' state (device-to-host into pinned memory for CUDA tensors, waited
// for before returning; a clone on the CPU). rng_all: [world, bytes], every rank's
// RngStreams::state() in rank order.
TrainStateSnapshot snapshot_train_state(TrainStateRefs refs, const TrainStateInfo& info, const torch::Tensor& rng_all,
                                        const std::string& config_text);
// Any thread: the checkpoint's named files; releases each part of the snapshot once encoded.
std::map<std::string, std::string> encode_train_state(TrainStateSnapshot& snapshot);

// Restores everything into refs. check_resume (may be empty) sees the checkpoint's config.yaml
// first. RNG states are restored only when the world size is unchanged. Throws
// std::runtime_error naming the checkpoint file and the mismatch.
TrainStateInfo read_train_state(const LoadedCheckpoint& checkpoint, TrainStateRefs refs,
                                const std::function<void(const std::string&)>& check_resume, int64_t rank,
                                int64_t world);

}  // namespace vdm
