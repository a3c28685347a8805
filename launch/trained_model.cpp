// Loading a trained model (see trained_model.h): find the checkpoint, parse its config.yaml,
// rebuild model and objective as the trainer does, then load the checkpoint's tensors.
#include "launch/trained_model.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <filesystem>
#include <stdexcept>

#include "launch/module_options.h"
#include "models/ema.h"
#include "models/model_presets.h"
#include "training/checkpoint_store.h"
#include "training/run_directory.h"
#include "training/train_state.h"

namespace vdm {
namespace {

namespace fs = std::filesystem;

LoadedCheckpoint find_checkpoint(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec))
    throw std::runtime_error(path + ": no such run directory or checkpoint folder");
  if (!fs::is_directory(path, ec))
    throw std::runtime_error(path + ": not a directory; give a run directory or a RUN/checkpoints/step_XXXXXXXX folder");
  const fs::path p(path);
  if (fs::exists(p / "manifest.json", ec)) {
    // The store is only asked to verify and read; its folder (the parent) already exists.
    CheckpointStore store({fs::absolute(p).parent_path().string()});
    return store.load(path);
  }
  if (const std::string dir = RunDirectory(p).checkpoints(); fs::is_directory(dir, ec)) {
    CheckpointStore store({dir});
    std::vector<std::string> problems;
    if (auto found = store.load_latest_valid(&problems)) {
      for (const auto& problem : problems) spdlog::warn("skipping corrupt checkpoint {}", problem);
      return *found;
    }
    std::string message = path + ": no complete checkpoint in " + dir;
    for (const auto& problem : problems) message += "\n  " + problem;
    throw std::runtime_error(message + "\n(has the run written one yet? checkpoints are written at the end "
                             "of training, every checkpoint.every steps and on preemption)");
  }
  throw std::runtime_error(path + ": neither a run directory (no checkpoints/ inside) nor a checkpoint "
                           "folder (no manifest.json inside)");
}

}  // namespace

TrainedModel load_trained_model(const std::string& run_or_checkpoint, bool ema) {
  LoadedCheckpoint ckpt = find_checkpoint(run_or_checkpoint);
  TrainedModel out;
  out.step = ckpt.step;
  out.checkpoint = ckpt.path;
  out.ema = ema;
  const auto cfg_it = ckpt.files.find("config.yaml");
  if (cfg_it == ckpt.files.end()) throw std::runtime_error(ckpt.path + ": config.yaml is missing");
  out.config = parse_config(cfg_it->second, ckpt.path + "/config.yaml");

  out.model = make_model(model_options(out.config));
  out.objective = make_objective(out.config.objective, make_schedule(out.config.schedule));
  // Built and loaded on the CPU (a checkpoint written on a GPU loads on a box without one);
  // callers move the model to their device. model.pt first in either case: it holds the network's buffers, which the average lacks.
  load_module(*out.model, ckpt, "model.pt", c10::kCPU);
  if (ema) {
    // ema.pt holds the EMA module's shadow copies of the parameters, as buffers.
    Ema average(*out.model, EmaOptions{});
    load_module(*average, ckpt, "ema.pt", c10::kCPU);
    average->copy_to(*out.model);
  }
  load_module(*out.objective, ckpt, "objective.pt", c10::kCPU);
  out.model->eval();
  out.objective->eval();
  for (auto& p : out.model->parameters()) p.set_requires_grad(false);
  for (auto& p : out.objective->parameters()) p.set_requires_grad(false);
  return out;
}

}  // namespace vdm
