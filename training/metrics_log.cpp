// JSON-lines metric files (see metrics_log.h).
#include "training/metrics_log.h"

#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "data/atomic_file.h"

namespace vdm {

MetricsLog::MetricsLog(std::string path, bool enabled, int64_t keep_through_step) : path_(std::move(path)) {
  if (!enabled) return;
  std::string kept;
  if (keep_through_step >= 0) {
    std::ifstream in(path_);
    for (std::string line; std::getline(in, line);) {
      // A torn last line (crash mid-write) does not parse and is dropped with the later steps.
      const auto record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (record.is_discarded() || !record.contains("step")) continue;
      if (record["step"].get<int64_t>() <= keep_through_step) kept += line + "\n";
    }
  }
  write_file_atomically(path_, kept);
  file_ = std::fopen(path_.c_str(), "a");
  if (!file_) throw std::runtime_error("cannot append to " + path_);
}

MetricsLog::~MetricsLog() {
  if (file_) std::fclose(file_);
}

void MetricsLog::write(const nlohmann::json& record) {
  if (!file_) return;
  const std::string line = record.dump() + "\n";
  std::fwrite(line.data(), 1, line.size(), file_);
  std::fflush(file_);
}

}  // namespace vdm
