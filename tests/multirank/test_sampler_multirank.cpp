// DistributedSampler across real MPI ranks: the gathered index sets of an epoch are disjoint
// (but for padding) and cover the dataset, the order is the same everywhere and changes with the
// epoch, and a mid-epoch state restored on a smaller communicator continues the global stream.
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <vector>

#include "data/distributed_sampler.h"
#include "tests/multirank/mpi_gtest_main.h"

namespace vdm {
namespace {

using Indices = std::vector<int64_t>;

int comm_rank(MPI_Comm comm) {
  int r = 0;
  MPI_Comm_rank(comm, &r);
  return r;
}

int comm_size(MPI_Comm comm) {
  int s = 1;
  MPI_Comm_size(comm, &s);
  return s;
}

// Every rank's vector, on every rank, in rank order (lengths may differ).
std::vector<Indices> all_gather(const Indices& mine, MPI_Comm comm) {
  const int size = comm_size(comm);
  int count = static_cast<int>(mine.size());
  std::vector<int> counts(static_cast<size_t>(size)), displs(static_cast<size_t>(size));
  MPI_Allgather(&count, 1, MPI_INT, counts.data(), 1, MPI_INT, comm);
  int total = 0;
  for (int r = 0; r < size; ++r) {
    displs[r] = total;
    total += counts[r];
  }
  Indices flat(static_cast<size_t>(total));
  MPI_Allgatherv(mine.data(), count, MPI_INT64_T, flat.data(), counts.data(), displs.data(),
                 MPI_INT64_T, comm);
  std::vector<Indices> out;
  for (int r = 0; r < size; ++r)
    out.emplace_back(flat.begin() + displs[r], flat.begin() + displs[r] + counts[r]);
  return out;
}

// Undoes the strided split: rank r's i-th index sits at stream position r + i * world.
Indices interleave(const std::vector<Indices>& per_rank) {
  Indices out;
  for (size_t i = 0; i < per_rank[0].size(); ++i)
    for (const auto& r : per_rank) out.push_back(i < r.size() ? r[i] : -1);
  return out;
}

SamplerOptions opts(int64_t n, MPI_Comm comm, bool drop_last, uint64_t seed = 2024) {
  SamplerOptions o;
  o.dataset_size = n;
  o.rank = comm_rank(comm);
  o.world = comm_size(comm);
  o.seed = seed;
  o.drop_last = drop_last;
  return o;
}

// Counts of each index over all parts; the repeats (sorted) and how many of 0..n-1 are missing.
void tally(const std::vector<std::vector<Indices>>& parts, int64_t n, Indices& repeats,
           int64_t& missing) {
  std::map<int64_t, int> count;
  for (const auto& part : parts)
    for (const auto& r : part)
      for (int64_t i : r) ++count[i];
  repeats.clear();
  missing = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (count[i] == 0) ++missing;
    for (int c = 1; c < count[i]; ++c) repeats.push_back(i);
  }
  for (const auto& [i, c] : count) EXPECT_TRUE(i >= 0 && i < n) << "index " << i << " out of range";
}

Indices sorted_head(const Indices& perm, int64_t k) {
  Indices head(perm.begin(), perm.begin() + k);
  std::sort(head.begin(), head.end());
  return head;
}

// Neither 2 nor 3 divides it, so there is always padding (or a cut tail).
constexpr int64_t kAwkwardSize = 43;

TEST(SamplerMultirank, EpochDisjointAndCovering) {
  const int world = comm_size(MPI_COMM_WORLD);
  const int64_t n = kAwkwardSize;
  for (bool drop_last : {false, true}) {
    SCOPED_TRACE(drop_last ? "drop_last" : "padded");
    DistributedSampler s(opts(n, MPI_COMM_WORLD, drop_last));
    const Indices mine = s.remaining_indices();
    EXPECT_EQ(static_cast<int64_t>(mine.size()), s.samples_per_rank());
    const auto all = all_gather(mine, MPI_COMM_WORLD);
    for (const auto& r : all) EXPECT_EQ(r.size(), mine.size()) << "ranks got different counts";

    Indices repeats;
    int64_t missing = 0;
    tally({all}, n, repeats, missing);
    const Indices perm = s.permutation(0);
    if (drop_last) {
      EXPECT_TRUE(repeats.empty());
      EXPECT_EQ(missing, n % world);
    } else {
      EXPECT_EQ(missing, 0);
      EXPECT_EQ(repeats, sorted_head(perm, (world - n % world) % world));
    }
    const Indices stream = interleave(all);
    for (size_t p = 0; p < stream.size(); ++p)
      EXPECT_EQ(stream[p], perm[p % static_cast<size_t>(n)]) << "stream position " << p;
  }
}

TEST(SamplerMultirank, SameOrderOnEveryRankAndDeterministic) {
  const int64_t n = 101;
  DistributedSampler a(opts(n, MPI_COMM_WORLD, false)), b(opts(n, MPI_COMM_WORLD, false));
  EXPECT_EQ(a.remaining_indices(), b.remaining_indices());
  EXPECT_EQ(a.permutation(5), b.permutation(5));
  // Every rank must compute the very same permutation, or the split would not be a partition.
  const auto perms = all_gather(a.permutation(3), MPI_COMM_WORLD);
  for (const auto& p : perms) EXPECT_EQ(p, perms[0]);
}

TEST(SamplerMultirank, OrderChangesWithEpoch) {
  const int64_t n = 101;
  DistributedSampler s(opts(n, MPI_COMM_WORLD, false));
  const Indices e0 = interleave(all_gather(s.remaining_indices(), MPI_COMM_WORLD));
  s.restore({1, 0});
  const Indices e1 = interleave(all_gather(s.remaining_indices(), MPI_COMM_WORLD));
  EXPECT_EQ(e0.size(), e1.size());
  EXPECT_NE(e0, e1);
  for (Indices e : {e0, e1}) {
    std::sort(e.begin(), e.end());
    e.erase(std::unique(e.begin(), e.end()), e.end());
    EXPECT_EQ(static_cast<int64_t>(e.size()), n);
  }
}

// Take `batches` batches on the whole world, then restore the state on ranks 0..world-2 only
// (as a job resumed with one node fewer) and read the rest of the epoch there.
void restore_on_smaller_world(bool drop_last) {
  const int world = comm_size(MPI_COMM_WORLD);
  if (world < 2) GTEST_SKIP() << "needs at least 2 ranks";
  const int rank = comm_rank(MPI_COMM_WORLD);
  const int64_t n = kAwkwardSize;
  const int64_t batch = 3, batches = 2;

  DistributedSampler before(opts(n, MPI_COMM_WORLD, drop_last));
  Indices taken;
  for (int64_t k = 0; k < batches; ++k) {
    const Indices b = before.next_batch(batch);
    taken.insert(taken.end(), b.begin(), b.end());
  }
  const SamplerState saved = before.state();
  EXPECT_EQ(saved.epoch, 0);
  EXPECT_EQ(saved.consumed, batch * batches * world);
  const auto taken_all = all_gather(taken, MPI_COMM_WORLD);
  const Indices perm = before.permutation(0);
  EXPECT_EQ(interleave(taken_all), Indices(perm.begin(), perm.begin() + saved.consumed));

  MPI_Comm smaller = MPI_COMM_NULL;
  MPI_Comm_split(MPI_COMM_WORLD, rank < world - 1 ? 0 : MPI_UNDEFINED, rank, &smaller);
  if (smaller == MPI_COMM_NULL) return;  // the rank that is gone after the restart

  const int w2 = world - 1;
  EXPECT_EQ(comm_size(smaller), w2);
  DistributedSampler after(opts(n, smaller, drop_last));
  after.restore(saved);
  const Indices rest = after.remaining_indices();
  const auto rest_all = all_gather(rest, smaller);
  for (const auto& r : rest_all) EXPECT_EQ(r.size(), rest.size()) << "ranks got different counts";

  // The global stream goes on from `consumed`: positions past n wrap to the epoch's start.
  const int64_t left = n - saved.consumed;
  const int64_t expect_len = drop_last ? left / w2 * w2 : (left + w2 - 1) / w2 * w2;
  const Indices stream = interleave(rest_all);
  EXPECT_EQ(static_cast<int64_t>(stream.size()), expect_len);
  for (size_t i = 0; i < stream.size(); ++i)
    EXPECT_EQ(stream[i], perm[(saved.consumed + i) % n]) << "position " << saved.consumed + i;

  Indices repeats;
  int64_t missing = 0;
  tally({taken_all, rest_all}, n, repeats, missing);
  if (drop_last) {
    EXPECT_TRUE(repeats.empty());
    EXPECT_EQ(missing, left - expect_len);
    EXPECT_LT(missing, w2);
  } else {
    EXPECT_EQ(missing, 0);
    EXPECT_EQ(repeats, sorted_head(perm, saved.consumed + expect_len - n));
  }

  // Training goes on with next_batch: the batches are the remaining indices in order, and the
  // tail that cannot fill a batch is skipped for the next epoch.
  Indices batched;
  while (after.state().epoch == 0) {
    const Indices b = after.next_batch(batch);
    if (after.state().epoch == 0) batched.insert(batched.end(), b.begin(), b.end());
  }
  const size_t full = rest.size() / batch * batch;
  EXPECT_EQ(batched, Indices(rest.begin(), rest.begin() + full));
  MPI_Comm_free(&smaller);
}

TEST(SamplerMultirank, RestoreOnSmallerWorldContinuesStream) { restore_on_smaller_world(false); }

TEST(SamplerMultirank, RestoreOnSmallerWorldContinuesStreamDropLast) {
  restore_on_smaller_world(true);
}

}  // namespace
}  // namespace vdm
