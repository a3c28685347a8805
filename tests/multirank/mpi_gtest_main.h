// main() for the multi-rank GTest binaries (each tests/multirank/*.cpp is its own binary and
// includes this header once): every rank runs every test, only rank 0 prints GTest's report,
// and the job fails on every rank if any rank failed.
#pragma once

#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>
#include <string>

namespace vdm::testing {

// Other ranks' full reports would interleave with rank 0's, but their failures must still be
// seen: this prints only failed assertions, prefixed with the rank.
class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}

  // The test's name is kept here because UnitTest::current_test_info() would take the lock
  // that GTest holds while it reports a part result (a self-deadlock).
  void OnTestStart(const ::testing::TestInfo& info) override {
    test_ = std::string(info.test_suite_name()) + "." + info.name();
  }

  void OnTestPartResult(const ::testing::TestPartResult& result) override {
    if (!result.failed()) return;
    std::fprintf(stderr, "[rank %d] FAILED %s at %s:%d\n%s\n", rank_, test_.c_str(),
                 result.file_name() ? result.file_name() : "?", result.line_number(),
                 result.message());
    std::fflush(stderr);
  }

 private:
  int rank_;
  std::string test_;
};

inline int mpi_world_rank() {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

inline int mpi_world_size() {
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return size;
}

}  // namespace vdm::testing

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  const int rank = vdm::testing::mpi_world_rank();
  if (rank != 0) {
    ::testing::TestEventListeners& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new vdm::testing::RankFailurePrinter(rank));
  }
  // Tests must reach the same collectives on every rank whatever they assert (EXPECT_*, or
  // ASSERT_* only after the last collective), or a failure on one rank deadlocks the others.
  const int local_failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  int any_failed = 0;
  MPI_Allreduce(&local_failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (rank == 0 && any_failed && !local_failed)
    std::fprintf(stderr, "A test failed on another rank (see its [rank N] FAILED lines).\n");
  MPI_Finalize();
  return any_failed;
}
