// Checkpointer across real MPI ranks: rank 0 writes in the background; a write that fails there
// is an error on every rank at the next sync point (the next checkpoint, or finish()), and no
// rank returns from finish() before rank 0 has committed the checkpoint.
#include <gtest/gtest.h>
#include <mpi.h>
#include <stdlib.h>
#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>

#include "distributed/mpi_communicator.h"
#include "distributed/watchdog.h"
#include "tests/multirank/mpi_gtest_main.h"
#include "tests/train_state_fixture.h"
#include "training/checkpointer.h"

namespace vdm {
namespace {

namespace fs = std::filesystem;

// A fresh folder made by rank 0, its path on every rank (one machine: one filesystem).
std::string shared_temp_dir() {
  char path[256] = {};
  if (testing::mpi_world_rank() == 0) {
    std::string pattern = (fs::temp_directory_path() / "vdm_ckpt_XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    std::snprintf(path, sizeof path, "%s", pattern.c_str());
  }
  MPI_Bcast(path, sizeof path, MPI_CHAR, 0, MPI_COMM_WORLD);
  return path;
}

CheckpointerOptions options(const std::string& dir, bool async) {
  CheckpointerOptions o;
  o.dir = dir;
  o.resume = "none";
  o.async = async;
  // Rank 0's write of step 2 fails, slowly, as a full disk would.
  o.before_write = [](int64_t step) {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    if (step == 2) throw CheckpointError("disk full");
  };
  return o;
}

std::string expected_error() {
  return testing::mpi_world_rank() == 0 ? "writing the checkpoint of step 2 failed: disk full"
                                        : "writing the checkpoint of step 2 failed on rank 0";
}

// What every test works on: a shared folder, the ranks' communicator and a checkpointer over a
// small train state. The folder goes once every rank is done with it.
struct Rig {
  explicit Rig(bool async)
      : dir(shared_temp_dir()), ckpt(options(dir, async), comm, watchdog, comm.rank(), comm.world()) {}
  ~Rig() {
    MPI_Barrier(MPI_COMM_WORLD);
    if (comm.rank() == 0) fs::remove_all(dir);
  }
  // Takes a training step and checkpoints it.
  void step_and_write() {
    f.step();
    ckpt.write(f.refs(), f.info());
  }
  bool committed(const char* step) const { return fs::exists(fs::path(dir) / step / "manifest.json"); }
  std::string dir;
  MpiCommunicator comm;
  Watchdog watchdog{60};
  testing::TrainStateFixture f;
  Checkpointer ckpt;
};

// The message `call` throws, "" when it returns.
template <class Call>
std::string error_of(Call call) {
  try {
    call();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

TEST(CheckpointerMultirank, BackgroundFailureFailsEveryRankAtTheNextCheckpoint) {
  Rig r(true);
  r.step_and_write();
  r.f.step();
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_NO_THROW(r.ckpt.write(r.f.refs(), r.f.info()));  // waits for step 1 (300 ms), not for step 2
  EXPECT_EQ(error_of([&] { r.step_and_write(); }), expected_error());
  EXPECT_GE(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 0.25)
      << "rank " << r.comm.rank() << " did not wait for rank 0's writes";
  EXPECT_NO_THROW(r.ckpt.finish());
  EXPECT_TRUE(r.committed("step_00000001"));
  EXPECT_FALSE(fs::exists(fs::path(r.dir) / "step_00000002"));
}

TEST(CheckpointerMultirank, FinishFailsEveryRankAndWaitsForTheCommit) {
  Rig r(true);
  r.step_and_write();
  r.ckpt.finish();  // as on preemption: every rank returns after the commit
  EXPECT_TRUE(r.committed("step_00000001"))
      << "rank " << r.comm.rank() << " returned from finish() before rank 0 committed";
  r.step_and_write();
  EXPECT_EQ(error_of([&] { r.ckpt.finish(); }), expected_error());
}

TEST(CheckpointerMultirank, SyncFailureFailsEveryRankAtOnce) {
  Rig r(false);
  r.step_and_write();
  EXPECT_TRUE(r.committed("step_00000001"));
  EXPECT_EQ(error_of([&] { r.step_and_write(); }), expected_error());
}

}  // namespace
}  // namespace vdm
