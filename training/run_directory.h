// The layout of a run directory, named in this one place: config.yaml, metrics.jsonl, eval.jsonl,
// checkpoints/, samples/, tb/ (TensorBoard event files) and the FID files that evaluation keeps.
// Everything that reads or writes a run (training, vdm eval/sample/submit/report) asks it for paths.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "training/checkpoint_store.h"

namespace vdm {

struct RunDirectory {
  std::filesystem::path root;

  explicit RunDirectory(std::filesystem::path dir) : root(std::move(dir)) {}
  std::string config() const { return (root / "config.yaml").string(); }
  std::string metrics() const { return (root / "metrics.jsonl").string(); }
  std::string eval_log() const { return (root / "eval.jsonl").string(); }
  std::string checkpoints() const { return (root / "checkpoints").string(); }
  std::string samples() const { return (root / "samples").string(); }
  std::string tensorboard() const { return (root / "tb").string(); }
  std::string fid_features() const { return (root / "fid_features.pt").string(); }
  std::string fid_reference() const { return (root / "fid_reference.npz").string(); }
  // checkpoints/step_XXXXXXXX and samples/step_XXXXXXXX.png share the step's name.
  std::string checkpoint(int64_t step) const {
    return (root / "checkpoints" / CheckpointStore::folder_name(step)).string();
  }
  std::string sample_grid(int64_t step) const {
    return (root / "samples" / (CheckpointStore::folder_name(step) + ".png")).string();
  }
};

}  // namespace vdm
