// RUN/metrics.jsonl and RUN/eval.jsonl: one JSON object per line, appended and flushed line by
// line so a crash loses at most the line being written. On resume, lines from steps after the
// checkpoint are dropped first, so the file reads as one run that never stopped. Each record
// also goes to TensorBoard (RUN/tb/) when the log is given a TensorBoardLog.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

namespace vdm {

class TensorBoardLog;

class MetricsLog {
 public:
  // enabled = false (ranks other than 0) makes every call a no-op. keep_through_step >= 0
  // drops existing lines whose "step" is larger; < 0 starts the file afresh. tensorboard: also
  // plot each record's numbers as tensorboard_prefix/<field> (and a "samples" grid path as the
  // image "samples"); metrics.jsonl and eval.jsonl share one.
  MetricsLog(std::string path, bool enabled, int64_t keep_through_step,
             std::shared_ptr<TensorBoardLog> tensorboard = nullptr, std::string tensorboard_prefix = "");
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;
  void write(const nlohmann::json& record);

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
  std::shared_ptr<TensorBoardLog> tensorboard_;
  std::string tensorboard_prefix_;
};

}  // namespace vdm
