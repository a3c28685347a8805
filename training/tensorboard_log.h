// RUN/tb/: the run as TensorBoard event files (the scalars of metrics.jsonl and eval.jsonl, the
// sample grids as images), written by rank 0 and read by `tensorboard --logdir`. A build without
// protobuf (VDM_WITH_TENSORBOARD=OFF) writes nothing and says so once.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace vdm {

class TensorBoardLog {
 public:
  // Starts dir/events.out.tfevents.<unix seconds>.<host>.<pid>.vdm: a new file per process,
  // since TensorBoard reads every file of a folder, in name order, as one run. start_step >= 0
  // marks a session start there, after which TensorBoard drops the points of earlier files at
  // steps >= start_step (as metrics.jsonl drops its lines after the checkpoint on resume).
  // enabled = false (ranks other than 0): no file, and every call is a no-op.
  TensorBoardLog(const std::string& dir, bool enabled, int64_t start_step = -1);
  ~TensorBoardLog();
  TensorBoardLog(const TensorBoardLog&) = delete;
  TensorBoardLog& operator=(const TensorBoardLog&) = delete;

  static bool built_in();         // false: built without protobuf
  bool active() const;            // a file is being written
  std::string path() const;       // of that file; "" when inactive

  // Every numeric field of `record` (booleans and strings are not plotted; nested objects
  // become prefix/outer/inner) as prefix/name, in one event at `step`. "step" and "epoch" are
  // left out: the step is the x axis, the epoch is not a metric.
  void add_scalars(int64_t step, const nlohmann::json& record, const std::string& prefix);
  void add_scalars(int64_t step, const std::map<std::string, double>& values);
  // channels: 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA (TensorBoard's colorspace).
  void add_image(const std::string& tag, int64_t step, const std::vector<uint8_t>& png, int height, int width,
                 int channels);
  // The size and channels from the PNG's header; false (and nothing written) if it is no PNG.
  bool add_png(const std::string& tag, int64_t step, const std::vector<uint8_t>& png);
  // Every add_* flushes on its own, so a crash loses at most the event being written.
  void flush();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace vdm
