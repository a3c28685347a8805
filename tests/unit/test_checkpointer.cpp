// Checkpoints written in the background (training/checkpointer.cpp): the snapshot encodes to the
// bytes the live state had when it was taken, whatever training does afterwards; asynchronous
// and synchronous checkpoints of one run are the same files; one write is in flight at most;
// finish() and the destructor wait for it; and a write that fails in the background is an error
// at the next sync point (the next checkpoint or finish()), or at once without `async`.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>

#include "distributed/self_communicator.h"
#include "distributed/watchdog.h"
#include "tests/test_support.h"
#include "tests/train_state_fixture.h"
#include "training/checkpointer.h"

namespace vdm::checkpointer_test {

namespace fs = std::filesystem;
using testing::file_bytes;
using testing::folder_files;
using testing::TrainStateFixture;

// A module's or an optimiser's archive, as bytes.
template <class Saveable>
std::string save_bytes(Saveable& x) {
  torch::serialize::OutputArchive archive;
  x.save(archive);
  std::ostringstream out;
  archive.save_to(out);
  return out.str();
}

// What encoding the live state would give now (the checkpoint files before issue 17).
std::map<std::string, std::string> encode_live(TrainStateFixture& f, const torch::Tensor& rng_all) {
  std::map<std::string, std::string> files;
  files["model.pt"] = save_bytes(*f.model);
  files["ema.pt"] = save_bytes(*f.ema);
  files["objective.pt"] = save_bytes(*f.objective);
  files["optimizer.pt"] = save_bytes(*f.optimizer);
  torch::serialize::OutputArchive archive;
  const auto state = f.objective->proposal().state();
  for (size_t i = 0; i < state.size(); ++i) archive.write(std::to_string(i), state[i]);
  archive.write("rng", rng_all);
  std::ostringstream out;
  archive.save_to(out);
  files["state.pt"] = out.str();
  return files;
}

CheckpointerOptions options(const std::string& dir, bool async) {
  CheckpointerOptions o;
  o.dir = dir;
  o.keep_last = 10;
  o.resume = "none";
  o.config_text = "seed: 3\n";
  o.async = async;
  return o;
}

fs::path manifest(const std::string& dir, int64_t step) {
  return fs::path(dir) / CheckpointStore::folder_name(step) / "manifest.json";
}

// Holds background writes until the test lets them go: before_write(step) blocks until
// release(step) (or release_all()), and records how many writes ever ran at once.
struct Gate {
  std::mutex mutex;
  std::condition_variable cv;
  int64_t released = -1;
  std::atomic<int> active{0}, max_active{0};

  std::function<void(int64_t)> hook() {
    return [this](int64_t step) {
      const int now = ++active;
      int seen = max_active.load();
      while (now > seen && !max_active.compare_exchange_weak(seen, now)) {}
      std::unique_lock<std::mutex> lock(mutex);
      cv.wait(lock, [&] { return released >= step; });
      --active;
    };
  }
  void release(int64_t step) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      released = std::max(released, step);
    }
    cv.notify_all();
  }
};

// The snapshot is a copy: encoded after training has moved on, it gives the bytes of the state
// when it was taken, and those are the bytes encoding the live modules gave (weights in
// channels-last layout, AdamW's moments and parameter keys in the optimiser's own order).
TEST(Checkpointer, SnapshotEncodesTheStateWhenItWasTaken) {
  TrainStateFixture f;
  f.step();
  f.step();
  const auto rng_all = f.rng.state().unsqueeze(0);
  const auto want = encode_live(f, rng_all);
  auto snapshot = snapshot_train_state(f.refs(), f.info(), rng_all, "config text\n");
  EXPECT_GT(snapshot.host_bytes, 0);
  f.step();  // in place: parameters, moments, EMA buffers, proposal statistics
  ASSERT_NE(save_bytes(*f.model), want.at("model.pt")) << "the step did not change the model";
  const auto got = encode_train_state(snapshot);
  for (const auto& [name, bytes] : want) EXPECT_TRUE(got.at(name) == bytes) << name << " differs";
  EXPECT_EQ(got.at("config.yaml"), "config text\n");
  EXPECT_NE(got.at("state.json").find("\"step\": 2"), std::string::npos) << got.at("state.json");
  EXPECT_FALSE(snapshot.model) << "encoding releases the snapshot's parts";
}

// Parameters that are views of one flat buffer (as a fused optimiser keeps them) stay views of
// one storage in the copy: the archive holds the storage once, with each view's offset.
TEST(Checkpointer, SnapshotKeepsViewsOfASharedStorage) {
  TrainStateFixture f;
  struct Flat : torch::nn::Module {
    torch::Tensor flat = torch::arange(10, torch::kFloat32);
    Flat() {
      register_parameter("a", flat.narrow(0, 0, 6).view({2, 3}));
      register_parameter("b", flat.narrow(0, 6, 4));
      register_buffer("c", flat.narrow(0, 2, 2));
    }
  };
  auto flat = std::make_shared<Flat>();
  Ema ema(*flat, EmaOptions{});
  torch::optim::AdamW optimizer(flat->parameters());
  TrainStateRefs refs{*flat, *ema, *f.objective, optimizer, f.rng, c10::kCPU};
  const auto want = save_bytes(*flat);
  auto snapshot = snapshot_train_state(refs, f.info(), f.rng.state().unsqueeze(0), "");
  const auto params = snapshot.model->named_parameters();
  EXPECT_TRUE(params["a"].is_alias_of(params["b"])) << "the views were copied apart";
  EXPECT_TRUE(params["a"].is_alias_of(snapshot.model->named_buffers()["c"]));
  EXPECT_FALSE(params["a"].is_alias_of(flat->flat)) << "not a copy";
  EXPECT_EQ(params["b"].storage_offset(), 6);
  EXPECT_TRUE(params["a"].requires_grad());
  EXPECT_TRUE(encode_train_state(snapshot).at("model.pt") == want);
}

// The same run checkpointed by a synchronous and an asynchronous Checkpointer, the background
// writes held back until training has taken the next step: the same files, byte for byte.
TEST(Checkpointer, AsyncAndSyncCheckpointsAreTheSameFiles) {
  TempDir tmp;
  SelfCommunicator comm;
  Watchdog watchdog(0);
  TrainStateFixture f;
  Gate gate;
  auto async_options = options(tmp.file("async"), true);
  async_options.before_write = gate.hook();
  Checkpointer sync(options(tmp.file("sync"), false), comm, watchdog, 0, 1);
  Checkpointer async(async_options, comm, watchdog, 0, 1);
  for (int i = 0; i < 3; ++i) {
    f.step();
    sync.write(f.refs(), f.info());
    ASSERT_TRUE(fs::exists(manifest(tmp.file("sync"), f.counters.step)));
    async.write(f.refs(), f.info());  // waits for the previous write, which waits for the gate
    EXPECT_EQ(async.last_step(), f.counters.step);
    EXPECT_FALSE(fs::exists(manifest(tmp.file("async"), f.counters.step))) << "the step waited for the write";
    f.step();  // changes everything the background write is about to encode
    gate.release(f.counters.step - 1);
  }
  async.finish();
  EXPECT_EQ(gate.max_active.load(), 1);
  for (int64_t step : {1, 3, 5}) {
    const auto a = folder_files(fs::path(tmp.file("async")) / CheckpointStore::folder_name(step));
    const auto s = folder_files(fs::path(tmp.file("sync")) / CheckpointStore::folder_name(step));
    ASSERT_EQ(a.size(), 8u) << "step " << step;
    ASSERT_EQ(s.size(), 8u) << "step " << step;
    for (const auto& [name, bytes] : s) EXPECT_TRUE(a.at(name) == bytes) << name << " of step " << step << " differs";
  }
}

// A second checkpoint waits for the first write; finish() returns once the last one is
// committed; the destructor also waits.
TEST(Checkpointer, OneWriteInFlightAndFinishWaitsForIt) {
  TempDir tmp;
  SelfCommunicator comm;
  Watchdog watchdog(0);
  TrainStateFixture f;
  Gate gate;
  auto o = options(tmp.file("ckpt"), true);
  o.before_write = gate.hook();
  struct Joiner {
    std::thread t;
    ~Joiner() {
      if (t.joinable()) t.join();
    }
  };
  {
    Joiner last;  // destroyed after ckpt, whose destructor waits for the gate it opens
    Checkpointer ckpt(o, comm, watchdog, 0, 1);
    f.step();
    ckpt.write(f.refs(), f.info());
    f.step();
    std::thread opener([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      gate.release(1);
    });
    const auto t0 = std::chrono::steady_clock::now();
    ckpt.write(f.refs(), f.info());  // step 2: waits for step 1's write
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    opener.join();
    EXPECT_GE(waited, 0.1) << "the second checkpoint did not wait for the first write";
    EXPECT_TRUE(fs::exists(manifest(tmp.file("ckpt"), 1)));
    EXPECT_FALSE(fs::exists(manifest(tmp.file("ckpt"), 2)));
    std::thread later([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      gate.release(2);
    });
    ckpt.finish();
    later.join();
    EXPECT_TRUE(fs::exists(manifest(tmp.file("ckpt"), 2))) << "finish() returned before the write was committed";
    EXPECT_EQ(file_bytes(fs::path(tmp.file("ckpt")) / "latest"), "step_00000002\n");
    ckpt.finish();  // nothing in flight: a no-op

    f.step();
    ckpt.write(f.refs(), f.info());
    last.t = std::thread([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      gate.release(3);
    });
  }  // ~Checkpointer waits for step 3
  EXPECT_TRUE(fs::exists(manifest(tmp.file("ckpt"), 3))) << "the destructor did not wait for the write";
  EXPECT_EQ(gate.max_active.load(), 1);
}

// The checkpoints folder replaced by a file after the first checkpoint: the next write fails in
// the background, and the failure surfaces at the next sync point with the step it was for.
TEST(Checkpointer, BackgroundFailureSurfacesAtTheNextSyncPoint) {
  for (const bool via_finish : {false, true}) {
    TempDir tmp;
    SelfCommunicator comm;
    Watchdog watchdog(0);
    TrainStateFixture f;
    const std::string dir = tmp.file("ckpt");
    Checkpointer ckpt(options(dir, true), comm, watchdog, 0, 1);
    f.step();
    ckpt.write(f.refs(), f.info());
    ckpt.finish();
    ASSERT_TRUE(fs::exists(manifest(dir, 1)));
    fs::rename(dir, tmp.file("moved"));
    std::ofstream(dir) << "not a folder";
    f.step();
    ASSERT_NO_THROW(ckpt.write(f.refs(), f.info())) << "async: the step must not wait for the write";
    f.step();
    try {
      if (via_finish)
        ckpt.finish();
      else
        ckpt.write(f.refs(), f.info());
      FAIL() << "the failed write of step 2 was not reported";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("writing the checkpoint of step 2 failed: cannot write checkpoint"),
                std::string::npos)
          << e.what();
    }
    EXPECT_NO_THROW(ckpt.finish()) << "a failure is reported once";
  }
}

// Without async the write is on the step, and so is its failure.
TEST(Checkpointer, SyncFailureIsImmediate) {
  TempDir tmp;
  SelfCommunicator comm;
  Watchdog watchdog(0);
  TrainStateFixture f;
  auto o = options(tmp.file("ckpt"), false);
  o.before_write = [](int64_t step) {
    if (step == 2) throw CheckpointError("disk full");
  };
  Checkpointer ckpt(o, comm, watchdog, 0, 1);
  f.step();
  ckpt.write(f.refs(), f.info());
  EXPECT_TRUE(fs::exists(manifest(tmp.file("ckpt"), 1)));
  f.step();
  try {
    ckpt.write(f.refs(), f.info());
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), "writing the checkpoint of step 2 failed: disk full");
  }
  EXPECT_FALSE(fs::exists(manifest(tmp.file("ckpt"), 2)));
}

// A checkpoint written in the background resumes into the state it was taken from.
TEST(Checkpointer, AsyncCheckpointResumes) {
  TempDir tmp;
  SelfCommunicator comm;
  Watchdog watchdog(0);
  TrainStateFixture f;
  f.step();
  f.step();
  {
    Checkpointer ckpt(options(tmp.file("ckpt"), true), comm, watchdog, 0, 1);
    ckpt.write(f.refs(), f.info());
    ckpt.finish();
  }
  const auto want = encode_live(f, f.rng.state().unsqueeze(0));
  TrainStateFixture g(99);  // other weights, moments and streams
  auto o = options(tmp.file("ckpt"), true);
  o.resume = "auto";
  Checkpointer ckpt(o, comm, watchdog, 0, 1);
  const auto info = ckpt.resume(g.refs());
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->counters.step, 2);
  g.counters = info->counters;
  EXPECT_EQ(ckpt.last_step(), 2);
  EXPECT_TRUE(torch::equal(g.rng.state(), f.rng.state()));
  for (const char* name : {"model.pt", "ema.pt", "objective.pt"}) {
    torch::nn::Module& m = std::string(name) == "model.pt" ? static_cast<torch::nn::Module&>(*g.model)
                           : std::string(name) == "ema.pt" ? static_cast<torch::nn::Module&>(*g.ema)
                                                           : static_cast<torch::nn::Module&>(*g.objective);
    EXPECT_TRUE(save_bytes(m) == want.at(name)) << name;
  }
  // The moments are restored: one more step on each gives the same weights.
  f.step();
  g.step();
  for (size_t i = 0; i < f.model->parameters().size(); ++i)
    EXPECT_TRUE(torch::equal(f.model->parameters()[i], g.model->parameters()[i])) << "parameter " << i;
}

}  // namespace vdm::checkpointer_test
