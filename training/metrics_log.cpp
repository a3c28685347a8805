// JSON-lines metric files (see metrics_log.h).
#include "training/metrics_log.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "data/atomic_file.h"
#include "training/tensorboard_log.h"

namespace vdm {

MetricsLog::MetricsLog(std::string path, bool enabled, int64_t keep_through_step,
                       std::shared_ptr<TensorBoardLog> tensorboard, std::string tensorboard_prefix)
    : path_(std::move(path)), tensorboard_(std::move(tensorboard)), tensorboard_prefix_(std::move(tensorboard_prefix)) {
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
  if (!tensorboard_ || !tensorboard_->active() || !record.contains("step")) return;
  const auto step = record["step"].get<int64_t>();
  tensorboard_->add_scalars(step, record, tensorboard_prefix_);
  // The evaluator has just written the grid (atomically): its bytes are the image, not
  // encoded a second time.
  const auto samples = record.find("samples");
  if (samples != record.end() && samples->is_string()) {
    std::ifstream in(samples->get<std::string>(), std::ios::binary);
    const std::vector<uint8_t> png{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    if (!in.is_open() || !tensorboard_->add_png("samples", step, png))
      spdlog::warn("tensorboard: cannot read the sample grid {} as a PNG", samples->get<std::string>());
  }
}

}  // namespace vdm
