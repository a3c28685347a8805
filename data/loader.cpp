// Ordered, prefetching loader (see loader.h). Jobs (one batch each) are cut from the sampler
// under the lock in sequence order, so the sampler's stream is consumed exactly as a
// single-threaded reader would; workers build batches in parallel and next() hands them out by
// sequence number. At most `prefetch` batches are ahead of the consumer.
#include "data/loader.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include "data/image_codec.h"
#include "data/transforms.h"

namespace vdm {

bool flip_sample(uint64_t seed, int64_t epoch, int64_t index) {
  // SplitMix64's finaliser over a combination of the three: well mixed, and portable.
  uint64_t z = seed * 0x9E3779B97F4A7C15ull ^ (uint64_t(epoch) + 0x632BE59BD9B4E019ull) * 0xD1B54A32D192ED03ull ^
               uint64_t(index) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return (z >> 63) != 0;
}

Loader::Loader(DatasetPtr dataset, DistributedSampler sampler, LoaderOptions options)
    : dataset_(std::move(dataset)), sampler_(std::move(sampler)), options_(std::move(options)) {
  if (options_.batch_size < 1) throw std::invalid_argument("loader: batch_size must be >= 1");
  options_.prefetch = std::max<int64_t>(1, options_.prefetch);
  for (int64_t i = 0; i < options_.workers; ++i) workers_.emplace_back([this] { worker_loop(); });
}

Loader::~Loader() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void Loader::read_sample(int64_t epoch, int64_t index, uint8_t* out, int64_t* used_index) {
  const int64_t n = dataset_->size();
  // A broken sample is replaced by the next readable one in index order: deterministic, and
  // the batch keeps its size so that every rank still takes part in the same collectives.
  for (int64_t attempt = 0; attempt < n; ++attempt) {
    const int64_t i = (index + attempt) % n;
    try {
      dataset_->read(i, out);
      *used_index = i;
      if (options_.flip && flip_sample(options_.seed, epoch, index)) {
        flip_horizontal_chw(out, int(dataset_->channels()), int(dataset_->resolution()),
                            int(dataset_->resolution()));
      }
      return;
    } catch (const ImageError& e) {
      if (options_.on_error == "fail")
        throw std::runtime_error(std::string(e.what()) +
                                 " (data.on_error=fail; set skip to leave such files out)");
      spdlog::warn("skipping unreadable sample: {}", e.what());
      ++skipped_;
    }
  }
  throw std::runtime_error("no readable sample in the whole dataset");
}

Batch Loader::build(const Job& job) {
  const int64_t B = int64_t(job.indices.size()), C = dataset_->channels(), R = dataset_->resolution();
  Batch b;
  b.images = torch::empty({B, C, R, R}, torch::kUInt8);
  b.labels = torch::empty({B}, torch::kLong);
  b.indices = torch::empty({B}, torch::kLong);
  auto* img = b.images.data_ptr<uint8_t>();
  auto* lab = b.labels.data_ptr<int64_t>();
  auto* idx = b.indices.data_ptr<int64_t>();
  for (int64_t k = 0; k < B; ++k) {
    read_sample(job.epoch, job.indices[k], img + k * C * R * R, &idx[k]);
    lab[k] = dataset_->label(idx[k]);
  }
  b.epoch = job.epoch;
  b.state_after = job.state_after;
  return b;
}

Loader::Job Loader::cut_job(int64_t seq) {
  Job job;
  job.seq = seq;
  job.epoch = sampler_.state().epoch;
  job.indices = sampler_.next_batch(options_.batch_size);
  job.state_after = sampler_.state();
  // next_batch skips a short epoch tail and takes the batch from the next epoch; a batch that
  // ends its epoch exactly leaves the state at the next epoch with nothing consumed.
  if (job.state_after.epoch != job.epoch && job.state_after.consumed > 0) job.epoch = job.state_after.epoch;
  return job;
}

void Loader::worker_loop() {
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return stop_ || next_job_ < next_out_ + options_.prefetch; });
      if (stop_) return;
      job = cut_job(next_job_++);
    }
    Batch batch;
    std::exception_ptr error;
    try {
      batch = build(job);
    } catch (...) {
      error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (error && !error_) error_ = error;
      ready_[job.seq] = std::move(batch);
    }
    cv_.notify_all();
  }
}

Batch Loader::next() {
  if (workers_.empty()) {
    return build(cut_job(next_out_++));
  }
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait(lock, [&] { return error_ || ready_.count(next_out_); });
  if (error_) std::rethrow_exception(error_);
  Batch b = std::move(ready_[next_out_]);
  ready_.erase(next_out_++);
  lock.unlock();
  cv_.notify_all();
  return b;
}

}  // namespace vdm
