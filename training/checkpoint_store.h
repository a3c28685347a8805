// Crash-safe checkpoint folders RUN/checkpoints/step_XXXXXXXX/ of named byte files, each with a
// manifest of sizes and CRC32s: atomic commit, verification, fallback to the newest intact one,
// and retention (last N plus milestones). Knows nothing about tensors; the trainer serialises.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace vdm {

struct CheckpointError : std::runtime_error {
  using runtime_error::runtime_error;
};

struct CheckpointStoreOptions {
  std::string dir;          // RUN/checkpoints
  int64_t keep_last = 3;    // newest N complete checkpoints are kept (>= 1)
  int64_t keep_every = 0;   // > 0: steps that are multiples of this are kept forever (milestones)
};

struct CheckpointInfo {
  int64_t step;
  std::string path;
};

struct LoadedCheckpoint {
  int64_t step;
  std::string path;
  std::map<std::string, std::string> files;  // file name -> bytes
};

// One writer per folder (rank 0); readers may run on any rank once the writer is done.
class CheckpointStore {
 public:
  // Creates options.dir if missing; throws CheckpointError on bad options.
  explicit CheckpointStore(CheckpointStoreOptions options);

  // Commits all files as checkpoint `step` or nothing (see the protocol in the .cpp), updates
  // `latest`, prunes, and returns the checkpoint's folder. Names must be plain file names.
  std::string write(int64_t step, const std::map<std::string, std::string>& files);
  // Complete checkpoints (step_XXXXXXXX folders holding a manifest.json), step ascending.
  std::vector<CheckpointInfo> list() const;
  // "" when intact, else one line naming the file, e.g. "model.pt: checksum mismatch (...)".
  std::string verify(const std::string& path) const;
  // Throws CheckpointError("<path>: <reason>") when the checkpoint does not verify.
  LoadedCheckpoint load(const std::string& path) const;
  // The newest checkpoint that verifies; newer corrupt ones are logged and, when `problems` is
  // given, appended to it as "<path>: <reason>". nullopt when none verifies.
  std::optional<LoadedCheckpoint> load_latest_valid(std::vector<std::string>* problems = nullptr) const;
  // Deletes checkpoints outside the newest keep_last, not milestones and not named by `latest`.
  void prune();
  // Removes .step_*.tmp folders left by a crash; returns how many.
  int64_t remove_stale_temporaries();

  const CheckpointStoreOptions& options() const { return options_; }

  // "step_00000042": the folder name of a step.
  static std::string folder_name(int64_t step);

 private:
  // Verifies `dir`; fills *out with the step and the bytes when non-null and intact.
  std::string check(const std::string& dir, LoadedCheckpoint* out) const;

  CheckpointStoreOptions options_;
};

// Test hook: when the environment variable VDM_FAULT_CHECKPOINT is "before_manifest", write()
// kills its own process with SIGKILL after the data files are written and fsynced but before
// the manifest; "before_rename" does so after the manifest but before the rename. Crash tests
// fork a child that sets it; production never sets it.

}  // namespace vdm
