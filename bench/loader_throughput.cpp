// Packed-shard loader throughput (img/s) at 32 and 64 px with 1 and 2 worker threads: packs
// synthetic images once into a temp folder, then times Loader::next() over whole epochs.
#include <benchmark/benchmark.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>
#include <map>

#include "data/atomic_file.h"
#include "data/loader.h"
#include "data/packed_dataset.h"
#include "data/packer.h"

namespace {

namespace fs = std::filesystem;

// A packed folder of n random images at resolution r, written directly in the packed layout.
std::string make_packed(int64_t r, int64_t n) {
  static std::map<int64_t, std::string> made;
  if (made.count(r)) return made[r];
  const auto dir = fs::temp_directory_path() / ("vdm_bench_packed_" + std::to_string(::getpid()) + "_" + std::to_string(r));
  fs::create_directories(dir);
  const int64_t bytes = 3 * r * r;
  auto records = torch::randint(0, 256, {n * bytes}, torch::kUInt8);
  auto labels = torch::randint(0, 1000, {n}, torch::kLong);
  vdm::PackedShardInfo info{vdm::shard_name(0), r, 3, n, 0, 0};
  vdm::write_file_atomically((dir / "shard_00000.bin").string(), records.data_ptr<uint8_t>(), size_t(n * bytes));
  vdm::write_file_atomically((dir / "shard_00000.labels").string(), labels.data_ptr<int64_t>(), size_t(n * 8));
  vdm::write_file_atomically((dir / "shard_00000.json").string(), vdm::shard_json(info));
  vdm::write_file_atomically((dir / "dataset.json").string(),
                             "{\"resolution\": " + std::to_string(r) + ", \"channels\": 3, \"num_classes\": 1000, "
                             "\"shards\": [{\"name\": \"shard_00000\", \"count\": " + std::to_string(n) + "}]}");
  return made[r] = dir.string();
}

void loader(benchmark::State& state) {
  const int64_t r = state.range(0), workers = state.range(1), batch = 128, n = 8192;
  vdm::DataOptions o;
  o.format = "packed";
  o.path = make_packed(r, n);
  o.resolution = r;
  auto ds = vdm::open_dataset(o);
  vdm::SamplerOptions so;
  so.dataset_size = n;
  vdm::LoaderOptions lo;
  lo.batch_size = batch;
  lo.workers = workers;
  vdm::Loader l(ds, vdm::DistributedSampler(so), lo);
  for (auto _ : state) benchmark::DoNotOptimize(l.next().images.data_ptr());
  state.counters["img/s"] = benchmark::Counter(double(batch), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["MB/s"] = benchmark::Counter(double(batch * 3 * r * r) / 1e6, benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

BENCHMARK(loader)->ArgNames({"px", "workers"})->Args({32, 1})->Args({32, 2})->Args({64, 1})->Args({64, 2})
    ->UseRealTime()->MinTime(1.0);

int main(int argc, char** argv) {
  torch::set_num_threads(1);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  for (int64_t r : {32, 64})
    fs::remove_all(fs::temp_directory_path() / ("vdm_bench_packed_" + std::to_string(::getpid()) + "_" + std::to_string(r)));
  return 0;
}
