// Building and loading a network (see trained_model.h).
#include "training/trained_model.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <filesystem>
#include <stdexcept>

#include "models/ema.h"
#include "training/run_directory.h"
#include "training/train_state.h"

namespace vdm {

namespace fs = std::filesystem;

Network build_network(const ModelOptions& model, const ScheduleOptions& schedule, const ObjectiveOptions& objective) {
  return {make_model(model), make_objective(objective, make_schedule(schedule))};
}

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

Network load_network(const LoadedCheckpoint& ckpt, const ModelOptions& model, const ScheduleOptions& schedule,
                     const ObjectiveOptions& objective, bool ema) {
  Network net = build_network(model, schedule, objective);
  // model.pt first in either case: it holds the network's buffers, which the average lacks.
  load_module(*net.model, ckpt, "model.pt", c10::kCPU);
  if (ema) {
    // ema.pt holds the EMA module's shadow copies of the parameters, as buffers.
    Ema average(*net.model, EmaOptions{});
    load_module(*average, ckpt, "ema.pt", c10::kCPU);
    average->copy_to(*net.model);
  }
  load_module(*net.objective, ckpt, "objective.pt", c10::kCPU);
  net.model->eval();
  net.objective->eval();
  for (auto& p : net.model->parameters()) p.set_requires_grad(false);
  for (auto& p : net.objective->parameters()) p.set_requires_grad(false);
  return net;
}

}  // namespace vdm
