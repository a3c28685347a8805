// Checkpoint contents <-> trainer state (see train_state.h). Tensors are stored with LibTorch's
// own archive format (readable by both LibTorch 1.13 and 2.x); counters as JSON.
#include "training/train_state.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <mutex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <unordered_map>

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

namespace {

// Host copies of tensors for a snapshot, made storage by storage: each storage is copied once,
// whole, and every tensor on it becomes the same view (offset, sizes, strides) of the copy. The
// archive pickles storages, not tensors, so the copies encode to the same bytes as the
// originals, shared storages included. CUDA storages go device-to-host into pinned memory
// without blocking, and finish() waits for all of them at once.
class HostCopier {
 public:
  torch::Tensor operator()(const torch::Tensor& t) {
    if (!t.defined()) return t;
    torch::NoGradGuard no_grad;
    const torch::Tensor base = t.detach();
    const int64_t item = int64_t(base.element_size());
    const int64_t nbytes = int64_t(base.storage().nbytes());
    const void* key = base.storage().unsafeGetStorageImpl();
    torch::Tensor copy;
    auto it = storages_.find(key);
    if (nbytes % item == 0 && (it == storages_.end() || it->second.scalar_type() == base.scalar_type())) {
      if (it == storages_.end()) {
        const torch::Tensor whole = base.as_strided({nbytes / item}, {1}, 0);
        it = storages_.emplace(key, to_host(whole)).first;
      }
      copy = it->second.as_strided(base.sizes(), base.strides(), base.storage_offset());
    } else {  // a storage read as two dtypes (never in this trainer): a plain copy, which loads the same
      copy = to_host(base);
    }
    if (t.requires_grad()) copy.set_requires_grad(true);
    return copy;
  }
  // Waits for the device-to-host copies; the copies are valid after it.
  void finish() {
    for (const int64_t device : cuda_devices_) torch::cuda::synchronize(device);
    cuda_devices_.clear();
  }
  int64_t host_bytes() const { return bytes_; }

 private:
  torch::Tensor to_host(const torch::Tensor& t) {
    torch::Tensor host;
    if (t.is_cuda()) {
      cuda_devices_.insert(t.device().index());
      host = torch::empty_strided(t.sizes(), t.strides(), t.options().device(c10::kCPU).pinned_memory(true));
      host.copy_(t, /*non_blocking=*/true);
    } else {
      host = t.clone(torch::MemoryFormat::Preserve);
    }
    bytes_ += int64_t(host.nbytes());
    return host;
  }
  std::unordered_map<const void*, torch::Tensor> storages_;
  int64_t bytes_ = 0;
  std::set<int64_t> cuda_devices_;
};

// A plain module with module's structure as Module::save sees it (its defined parameters and
// buffers, in order, and its serialisable children) holding host copies: saving it writes the
// archive that saving module would.
std::shared_ptr<torch::nn::Module> mirror(const torch::nn::Module& module, HostCopier& copy) {
  auto out = std::make_shared<torch::nn::Module>();
  for (const auto& p : module.named_parameters(/*recurse=*/false))
    out->register_parameter(p.key(), copy(p.value()), p.value().requires_grad());
  for (const auto& b : module.named_buffers(/*recurse=*/false)) out->register_buffer(b.key(), copy(b.value()));
  for (const auto& c : module.named_children())
    if (c.value()->is_serializable()) out->register_module(c.key(), mirror(*c.value(), copy));
  return out;
}

// AdamW with the same parameter groups (the live parameters: only their addresses are saved,
// as keys) and copied moments. The state table is sized like the live one and filled in its
// order, so it iterates, and saves, in the same order. nullptr for another optimiser type.
std::shared_ptr<torch::optim::Optimizer> copy_optimizer(torch::optim::Optimizer& live, HostCopier& copy) {
  auto* adamw = dynamic_cast<torch::optim::AdamW*>(&live);
  if (adamw == nullptr) return nullptr;
  const std::vector<torch::optim::OptimizerParamGroup> groups = live.param_groups();  // copies the options
  auto out = std::make_shared<torch::optim::AdamW>(
      groups, static_cast<const torch::optim::AdamWOptions&>(live.defaults()));
  auto& state = out->state();
  state.rehash(live.state().bucket_count());
  for (const auto& [key, value] : live.state()) {
    auto s = std::make_unique<torch::optim::AdamWParamState>(
        static_cast<const torch::optim::AdamWParamState&>(*value));
    s->exp_avg(copy(s->exp_avg()));
    s->exp_avg_sq(copy(s->exp_avg_sq()));
    s->max_exp_avg_sq(copy(s->max_exp_avg_sq()));
    state[key] = std::move(s);
  }
  return out;
}

std::string save_optimizer(torch::optim::Optimizer& optimizer) {
  torch::serialize::OutputArchive archive;
  optimizer.save(archive);
  return to_bytes(archive);
}

}  // namespace

TrainStateSnapshot snapshot_train_state(TrainStateRefs refs, const TrainStateInfo& info, const torch::Tensor& rng_all,
                                        const std::string& config_text) {
  HostCopier copy;
  TrainStateSnapshot s;
  s.model = mirror(refs.model, copy);
  s.ema = mirror(refs.ema, copy);
  s.objective = mirror(refs.objective, copy);
  s.optimizer = copy_optimizer(refs.optimizer, copy);
  if (!s.optimizer) s.optimizer_bytes = save_optimizer(refs.optimizer);
  for (const auto& t : refs.objective.proposal().state()) s.proposal.push_back(copy(t));
  s.rng_all = copy(rng_all);
  copy.finish();
  s.info = info;
  s.config_text = config_text;
  s.host_bytes = copy.host_bytes() + int64_t(s.optimizer_bytes.size());
  return s;
}

std::map<std::string, std::string> encode_train_state(TrainStateSnapshot& s) {
  std::map<std::string, std::string> files;
  files["model.pt"] = save_module(*s.model);
  s.model.reset();
  files["ema.pt"] = save_module(*s.ema);
  s.ema.reset();
  files["objective.pt"] = save_module(*s.objective);
  s.objective.reset();
  files["optimizer.pt"] = s.optimizer ? save_optimizer(*s.optimizer) : std::move(s.optimizer_bytes);
  s.optimizer.reset();
  {
    torch::serialize::OutputArchive archive;
    for (size_t i = 0; i < s.proposal.size(); ++i) archive.write(std::to_string(i), s.proposal[i]);
    archive.write("rng", s.rng_all);
    files["state.pt"] = to_bytes(archive);
  }
  nlohmann::json j{{"format", kFormat},
                   {"step", s.info.counters.step},
                   {"skipped_steps", s.info.counters.skipped_steps},
                   {"nonfinite_in_row", s.info.counters.nonfinite_in_row},
                   {"epoch", s.info.sampler.epoch},
                   {"consumed", s.info.sampler.consumed},
                   {"world", s.info.world},
                   {"proposal_tensors", s.proposal.size()}};
  files["state.json"] = j.dump(2) + "\n";
  files["config.yaml"] = s.config_text;
  s.proposal.clear();
  s.rng_all = torch::Tensor();
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
