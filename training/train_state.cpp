// Checkpoint contents <-> trainer state (see train_state.h). Tensors are stored with LibTorch's
// own archive format (readable by both LibTorch 1.13 and 2.x); counters as JSON.
#include "training/train_state.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <mutex>
#include <sstream>
#include <stdexcept>

#include "data/mix64.h"
#include "models/ema.h"
#include "objectives/objective.h"

namespace vdm {
namespace {

constexpr int kFormat = 1;

std::string to_bytes(torch::serialize::OutputArchive& archive) {
  std::ostringstream out;
  archive.save_to(out);
  return out.str();
}

// Tensors are read straight onto `device`. Without it the archive would put each tensor back
// on the device it was saved from, and Module::load then moves the parameter there: every rank
// of a resumed CUDA run would train on rank 0's GPU, and a CPU-only box could not read it.
torch::serialize::InputArchive from_bytes(const LoadedCheckpoint& ckpt, const std::string& name,
                                          c10::Device device) {
  auto it = ckpt.files.find(name);
  if (it == ckpt.files.end()) throw std::runtime_error(ckpt.path + ": " + name + " is missing");
  torch::serialize::InputArchive archive;
  std::istringstream in(it->second);
  archive.load_from(in, device);
  return archive;
}

std::string save_module(torch::nn::Module& module) {
  torch::serialize::OutputArchive archive;
  module.save(archive);
  return to_bytes(archive);
}

using Shapes = std::vector<std::pair<std::string, std::vector<int64_t>>>;

Shapes shapes_of(torch::nn::Module& module) {
  Shapes out;
  for (const auto& p : module.named_parameters()) out.emplace_back(p.key(), p.value().sizes().vec());
  for (const auto& b : module.named_buffers()) out.emplace_back(b.key(), b.value().sizes().vec());
  return out;
}

}  // namespace

// Module::load assigns the stored tensors without comparing shapes, so shapes are compared
// here: a checkpoint of another architecture must fail loudly, not train a mangled model.
void load_module(torch::nn::Module& module, const LoadedCheckpoint& ckpt, const std::string& name,
                 c10::Device device) {
  const Shapes before = shapes_of(module);
  auto archive = from_bytes(ckpt, name, device);
  try {
    torch::NoGradGuard no_grad;
    module.load(archive);
  } catch (const c10::Error& e) {
    throw std::runtime_error(ckpt.path + "/" + name + " does not match this model (" +
                             e.what_without_backtrace() + "); was it written with another model config?");
  }
  const Shapes after = shapes_of(module);
  for (size_t i = 0; i < before.size(); ++i)
    if (after[i].second != before[i].second)
      throw std::runtime_error(ckpt.path + "/" + name + ": " + before[i].first + " has shape " +
                               c10::str(after[i].second) + " there but " + c10::str(before[i].second) +
                               " in this model; was it written with another model config?");
}

uint64_t derive_seed(uint64_t seed, uint64_t index, const char* purpose) {
  uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a of the purpose
  for (const char* c = purpose; *c; ++c) h = (h ^ uint8_t(*c)) * 0x100000001b3ULL;
  return mix64(mix64(seed ^ h) + index * kGolden64);
}

RngStreams::RngStreams(uint64_t seed, int64_t rank, c10::Device device) {
  if (device.is_cuda()) {
    noise = at::globalContext().defaultGenerator(device);
    {
      std::lock_guard<std::mutex> lock(noise.mutex());
      noise.set_current_seed(derive_seed(seed, uint64_t(rank), "noise"));
    }
    levels = at::detail::createCPUGenerator(derive_seed(seed, uint64_t(rank), "levels"));
  } else {
    noise = at::detail::createCPUGenerator(derive_seed(seed, uint64_t(rank), "noise"));
    levels = noise;  // one stream, as before the split: CPU checkpoints stay loadable
  }
  auto dropout = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(dropout.mutex());
  dropout.set_current_seed(derive_seed(seed, uint64_t(rank), "dropout"));
}

namespace {

// The distinct generators behind the streams, in the order of their saved states.
std::vector<at::Generator> distinct_generators(const RngStreams& r) {
  std::vector<at::Generator> out{r.noise, at::detail::getDefaultCPUGenerator()};
  if (r.levels.defined() && r.levels != r.noise) out.push_back(r.levels);
  return out;
}

}  // namespace

torch::Tensor RngStreams::state() const {
  std::vector<torch::Tensor> parts;
  for (auto gen : distinct_generators(*this)) {
    std::lock_guard<std::mutex> lock(gen.mutex());
    parts.push_back(gen.get_state().reshape({-1}));
  }
  return torch::cat(parts).contiguous();
}

void RngStreams::load(const torch::Tensor& state) {
  auto gens = distinct_generators(*this);
  std::vector<int64_t> sizes;
  int64_t total = 0;
  for (auto& gen : gens) {
    std::lock_guard<std::mutex> lock(gen.mutex());
    sizes.push_back(gen.get_state().numel());
    total += sizes.back();
  }
  if (state.numel() != total)
    throw std::runtime_error("checkpointed RNG state has " + std::to_string(state.numel()) +
                             " bytes, this build and device expect " + std::to_string(total));
  int64_t offset = 0;
  for (size_t i = 0; i < gens.size(); ++i) {
    std::lock_guard<std::mutex> lock(gens[i].mutex());
    gens[i].set_state(state.narrow(0, offset, sizes[i]).clone());
    offset += sizes[i];
  }
}

std::map<std::string, std::string> write_train_state(TrainStateRefs refs, const TrainStateInfo& info,
                                                     const torch::Tensor& rng_all, const std::string& config_text) {
  std::map<std::string, std::string> files;
  files["model.pt"] = save_module(refs.model);
  files["ema.pt"] = save_module(refs.ema);
  files["objective.pt"] = save_module(refs.objective);
  {
    torch::serialize::OutputArchive archive;
    refs.optimizer.save(archive);
    files["optimizer.pt"] = to_bytes(archive);
  }
  {
    torch::serialize::OutputArchive archive;
    const auto state = refs.objective.proposal().state();
    for (size_t i = 0; i < state.size(); ++i) archive.write(std::to_string(i), state[i]);
    archive.write("rng", rng_all);
    files["state.pt"] = to_bytes(archive);
  }
  nlohmann::json j{{"format", kFormat},
                   {"step", info.counters.step},
                   {"skipped_steps", info.counters.skipped_steps},
                   {"nonfinite_in_row", info.counters.nonfinite_in_row},
                   {"epoch", info.sampler.epoch},
                   {"consumed", info.sampler.consumed},
                   {"world", info.world},
                   {"proposal_tensors", refs.objective.proposal().state().size()}};
  files["state.json"] = j.dump(2) + "\n";
  files["config.yaml"] = config_text;
  return files;
}

TrainStateInfo read_train_state(const LoadedCheckpoint& ckpt, TrainStateRefs refs,
                                const std::function<void(const std::string&)>& check_resume, int64_t rank,
                                int64_t world) {
  auto text = [&](const std::string& name) -> const std::string& {
    auto it = ckpt.files.find(name);
    if (it == ckpt.files.end()) throw std::runtime_error(ckpt.path + ": " + name + " is missing");
    return it->second;
  };
  if (check_resume) check_resume(text("config.yaml"));
  const auto j = nlohmann::json::parse(text("state.json"));
  if (j.value("format", 0) != kFormat)
    throw std::runtime_error(ckpt.path + "/state.json: format " + std::to_string(j.value("format", 0)) +
                             ", this vdm reads format " + std::to_string(kFormat));
  TrainStateInfo info;
  info.counters.step = j.at("step");
  info.counters.skipped_steps = j.at("skipped_steps");
  info.counters.nonfinite_in_row = j.at("nonfinite_in_row");
  info.sampler.epoch = j.at("epoch");
  info.sampler.consumed = j.at("consumed");
  info.world = j.at("world");

  load_module(refs.model, ckpt, "model.pt", refs.device);
  load_module(refs.ema, ckpt, "ema.pt", refs.device);
  load_module(refs.objective, ckpt, "objective.pt", refs.device);
  {
    auto archive = from_bytes(ckpt, "optimizer.pt", refs.device);
    refs.optimizer.load(archive);
  }
  // RNG states and the proposal's statistics live on the CPU whatever the training device.
  auto archive = from_bytes(ckpt, "state.pt", c10::kCPU);
  std::vector<torch::Tensor> proposal(j.at("proposal_tensors").get<size_t>());
  for (size_t i = 0; i < proposal.size(); ++i) archive.read(std::to_string(i), proposal[i]);
  if (!proposal.empty()) refs.objective.proposal().load_state(proposal);
  if (info.world == world) {
    torch::Tensor rng_all;
    archive.read("rng", rng_all);
    refs.rng.load(rng_all[rank]);
  }
  return info;
}

}  // namespace vdm
