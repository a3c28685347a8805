// DistributedSampler in one process (every rank simulated by its own sampler): golden
// permutations that pin the PRNG, PyTorch padding and drop_last counts, batch roll-over, and
// a mid-epoch restore onto a different world size continuing the same global stream.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <stdexcept>
#include <thread>
#include <vector>

#include "data/distributed_sampler.h"

namespace vdm {
namespace {

using Indices = std::vector<int64_t>;

SamplerOptions opts(int64_t n, int64_t world, int64_t rank = 0, uint64_t seed = 0,
                    bool drop_last = false) {
  SamplerOptions o;
  o.dataset_size = n;
  o.world = world;
  o.rank = rank;
  o.seed = seed;
  o.drop_last = drop_last;
  return o;
}

std::vector<DistributedSampler> ranks(int64_t n, int64_t world, bool drop_last = false,
                                      uint64_t seed = 0) {
  std::vector<DistributedSampler> out;
  for (int64_t r = 0; r < world; ++r) out.emplace_back(opts(n, world, r, seed, drop_last));
  return out;
}

// Undoes the strided split: rank r's i-th index sits at stream position r + i * world.
Indices interleave(const std::vector<Indices>& per_rank) {
  Indices out;
  for (size_t i = 0; i < per_rank[0].size(); ++i)
    for (const auto& r : per_rank) out.push_back(r.at(i));
  return out;
}

// The golden values were cross-checked against an independent Python transcription of
// SplitMix64 / xoshiro256** / Lemire / Fisher-Yates (xoshiro256** itself against the reference
// outputs for the state {1, 2, 3, 4}). A change here changes every run's data order.
TEST(DistributedSampler, GoldenPermutation) {
  DistributedSampler s(opts(10, 1));
  EXPECT_EQ(s.permutation(0), (Indices{7, 8, 0, 4, 2, 9, 6, 1, 3, 5}));
  EXPECT_EQ(s.permutation(1), (Indices{4, 3, 5, 9, 8, 7, 6, 1, 0, 2}));
  EXPECT_EQ(DistributedSampler(opts(10, 1, 0, 1)).permutation(0),
            (Indices{0, 6, 5, 7, 2, 9, 4, 1, 3, 8}));
  const Indices big = DistributedSampler(opts(1000, 1, 0, 42)).permutation(7);
  EXPECT_EQ(Indices(big.begin(), big.begin() + 8),
            (Indices{971, 342, 106, 271, 804, 60, 669, 789}));
}

// The permutation is cached per thread; samplers that differ in any input must not share it.
TEST(DistributedSampler, PermutationCacheKeysOnEveryInput) {
  const Indices golden{7, 8, 0, 4, 2, 9, 6, 1, 3, 5};
  SamplerOptions plain = opts(10, 1);
  plain.shuffle = false;
  DistributedSampler a(opts(10, 1)), b(plain), c(opts(11, 1)), d(opts(10, 1, 0, 1));
  for (int round = 0; round < 2; ++round) {
    EXPECT_EQ(a.permutation(0), golden);
    EXPECT_EQ(b.permutation(0), (Indices{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
    EXPECT_EQ(c.permutation(0).size(), 11u);
    EXPECT_EQ(a.remaining_indices(), golden);
    EXPECT_EQ(d.permutation(0), (Indices{0, 6, 5, 7, 2, 9, 4, 1, 3, 8}));
    EXPECT_NE(a.permutation(1), golden);
  }
  std::vector<Indices> from_threads(4);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < from_threads.size(); ++t)
    threads.emplace_back([&, t] {
      DistributedSampler s(opts(5000, 1, 0, 3));
      for (int64_t e = 0; e < 20; ++e) from_threads[t] = s.permutation(e % 3);
    });
  for (auto& t : threads) t.join();
  const Indices want = DistributedSampler(opts(5000, 1, 0, 3)).permutation(1);
  for (const auto& got : from_threads) EXPECT_EQ(got, want);
}

TEST(DistributedSampler, IsPermutationAndDeterministic) {
  for (int64_t n : {1, 2, 10, 997}) {
    DistributedSampler s(opts(n, 1, 0, 123));
    Indices p = s.permutation(3);
    EXPECT_EQ(p, DistributedSampler(opts(n, 1, 0, 123)).permutation(3));
    std::sort(p.begin(), p.end());
    Indices iota(static_cast<size_t>(n));
    std::iota(iota.begin(), iota.end(), int64_t{0});
    EXPECT_EQ(p, iota) << "n=" << n;
  }
}

TEST(DistributedSampler, EpochsAndSeedsDiffer) {
  DistributedSampler s(opts(100, 1));
  EXPECT_NE(s.permutation(0), s.permutation(1));
  EXPECT_NE(s.permutation(1), s.permutation(2));
  EXPECT_NE(s.permutation(0), DistributedSampler(opts(100, 1, 0, 1)).permutation(0));
}

TEST(DistributedSampler, NoShuffleIsIdentity) {
  SamplerOptions o = opts(7, 2);
  o.shuffle = false;
  DistributedSampler s(o);
  EXPECT_EQ(s.permutation(5), (Indices{0, 1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(s.remaining_indices(), (Indices{0, 2, 4, 6}));
  o.rank = 1;
  EXPECT_EQ(DistributedSampler(o).remaining_indices(), (Indices{1, 3, 5, 0}));
}

// N=10, world=3: PyTorch pads to 12 with the first two of the permutation
// {7, 8, 0, 4, 2, 9, 6, 1, 3, 5}, or with drop_last truncates to 9.
TEST(DistributedSampler, PaddingAndDropLastCounts) {
  auto padded = ranks(10, 3);
  EXPECT_EQ(padded[0].samples_per_rank(), 4);
  EXPECT_EQ(padded[0].remaining_indices(), (Indices{7, 4, 6, 5}));
  EXPECT_EQ(padded[1].remaining_indices(), (Indices{8, 2, 1, 7}));
  EXPECT_EQ(padded[2].remaining_indices(), (Indices{0, 9, 3, 8}));

  auto dropped = ranks(10, 3, /*drop_last=*/true);
  EXPECT_EQ(dropped[0].samples_per_rank(), 3);
  EXPECT_EQ(dropped[0].remaining_indices(), (Indices{7, 4, 6}));
  EXPECT_EQ(dropped[1].remaining_indices(), (Indices{8, 2, 1}));
  EXPECT_EQ(dropped[2].remaining_indices(), (Indices{0, 9, 3}));

  // Fewer samples than ranks: padding wraps around the permutation more than once.
  auto tiny = ranks(2, 5);
  const Indices p = tiny[0].permutation(0);
  std::vector<Indices> all;
  for (auto& s : tiny) all.push_back(s.remaining_indices());
  EXPECT_EQ(interleave(all), (Indices{p[0], p[1], p[0], p[1], p[0]}));
  EXPECT_EQ(ranks(2, 5, /*drop_last=*/true)[0].samples_per_rank(), 0);
}

TEST(DistributedSampler, RanksDisjointAndCovering) {
  for (int64_t world : {1, 2, 3, 4, 7}) {
    const int64_t n = 23;
    auto rs = ranks(n, world, false, 9);
    const Indices perm = rs[0].permutation(0);
    std::vector<Indices> all;
    for (auto& s : rs) {
      all.push_back(s.remaining_indices());
      EXPECT_EQ(static_cast<int64_t>(all.back().size()), s.samples_per_rank());
    }
    const Indices stream = interleave(all);
    const int64_t total = (n + world - 1) / world * world;
    ASSERT_EQ(static_cast<int64_t>(stream.size()), total);
    for (int64_t p = 0; p < total; ++p) EXPECT_EQ(stream[p], perm[p % n]) << "position " << p;
  }
}

TEST(DistributedSampler, NextBatchRollsOver) {
  // 4 per rank: one batch of 3, then the tail of 1 is skipped and epoch 1 begins.
  auto rs = ranks(10, 3);
  const Indices e0 = rs[1].permutation(0), e1 = rs[1].permutation(1);
  EXPECT_EQ(rs[1].next_batch(3), (Indices{e0[1], e0[4], e0[7]}));
  EXPECT_EQ(rs[1].state().epoch, 0);
  EXPECT_EQ(rs[1].state().consumed, 9);
  EXPECT_EQ(rs[1].next_batch(3), (Indices{e1[1], e1[4], e1[7]}));
  EXPECT_EQ(rs[1].state().epoch, 1);
  EXPECT_EQ(rs[1].state().consumed, 9);

  // Batches of 2 use the padding exactly: the second batch ends at stream position 12.
  DistributedSampler s(opts(10, 3, 2));
  EXPECT_EQ(s.next_batch(2), (Indices{e0[2], e0[5]}));
  EXPECT_EQ(s.next_batch(2), (Indices{e0[8], e0[11 % 10]}));
  EXPECT_EQ(s.state().consumed, 12);
  EXPECT_TRUE(s.remaining_indices().empty());
  EXPECT_EQ(s.next_batch(2), (Indices{e1[2], e1[5]}));
  EXPECT_EQ(s.state().epoch, 1);
  EXPECT_EQ(s.state().consumed, 6);
}

TEST(DistributedSampler, RestoreSameWorldContinues) {
  DistributedSampler a(opts(50, 2, 1, 5));
  Indices straight;
  for (int i = 0; i < 8; ++i) {  // 6 batches of 4 per rank fit in 25; the 7th rolls over
    const Indices b = a.next_batch(4);
    straight.insert(straight.end(), b.begin(), b.end());
  }
  DistributedSampler b(opts(50, 2, 1, 5)), c(opts(50, 2, 1, 5));
  Indices resumed;
  for (int i = 0; i < 8; ++i) {
    if (i == 4) c.restore(b.state());  // a different object, as after a restart
    const Indices x = (i < 4 ? b : c).next_batch(4);
    resumed.insert(resumed.end(), x.begin(), x.end());
  }
  EXPECT_EQ(straight, resumed);
  EXPECT_EQ(a.state().epoch, 1);
}

// Take `batches` batches on every rank of world `w1`, restore the state on world `w2`, read the
// rest of the epoch there, and check that the global stream continues: the part after is the
// permutation from `consumed` on, padded from the start of the epoch (or cut with drop_last).
void check_restore(int64_t n, int64_t w1, int64_t w2, int64_t batch, int64_t batches,
                   bool drop_last) {
  SCOPED_TRACE(::testing::Message() << "n=" << n << " " << w1 << "->" << w2 << " batch="
                                    << batch << "x" << batches << " drop_last=" << drop_last);
  auto before = ranks(n, w1, drop_last, 77);
  const Indices perm = before[0].permutation(0);
  std::map<int64_t, int> count;
  std::vector<Indices> taken(static_cast<size_t>(w1));
  for (int64_t k = 0; k < batches; ++k)
    for (int64_t r = 0; r < w1; ++r) {
      const Indices b = before[r].next_batch(batch);
      taken[r].insert(taken[r].end(), b.begin(), b.end());
    }
  const SamplerState saved = before[0].state();
  for (auto& s : before) EXPECT_EQ(s.state().consumed, saved.consumed);
  ASSERT_EQ(saved.epoch, 0);
  ASSERT_LT(saved.consumed, n);
  EXPECT_EQ(interleave(taken), Indices(perm.begin(), perm.begin() + saved.consumed));

  auto after = ranks(n, w2, drop_last, 77);
  std::vector<Indices> rest;
  for (auto& s : after) {
    s.restore(saved);
    rest.push_back(s.remaining_indices());
    EXPECT_EQ(rest.back().size(), rest.front().size());
  }
  const Indices stream = interleave(rest);
  EXPECT_EQ(stream.size() % static_cast<size_t>(w2), 0u);
  const int64_t left = n - saved.consumed;
  const int64_t expect_len = drop_last ? left / w2 * w2 : (left + w2 - 1) / w2 * w2;
  ASSERT_EQ(static_cast<int64_t>(stream.size()), expect_len);
  for (int64_t i = 0; i < expect_len; ++i)
    EXPECT_EQ(stream[i], perm[(saved.consumed + i) % n]) << "position " << saved.consumed + i;

  // The same as a set statement: every index at least once (drop_last: all but fewer than w2
  // at the tail), and the only repeats are the padding, i.e. the permutation's first entries.
  for (const auto& r : taken)
    for (int64_t i : r) ++count[i];
  for (const auto& r : rest)
    for (int64_t i : r) ++count[i];
  Indices repeats;
  int64_t missing = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (count[i] == 0) ++missing;
    for (int c = 1; c < count[i]; ++c) repeats.push_back(i);
  }
  if (drop_last) {
    EXPECT_TRUE(repeats.empty());
    EXPECT_LT(missing, w2);
  } else {
    EXPECT_EQ(missing, 0);
    const int64_t pad = saved.consumed + expect_len - n;
    Indices head(perm.begin(), perm.begin() + pad);
    std::sort(head.begin(), head.end());
    EXPECT_EQ(repeats, head);
  }

  // next_batch on the new world walks the same remaining indices.
  const int64_t per_rank = static_cast<int64_t>(rest[0].size());
  if (per_rank >= batch) {
    for (int64_t r = 0; r < w2; ++r)
      EXPECT_EQ(after[r].next_batch(batch), Indices(rest[r].begin(), rest[r].begin() + batch));
  }
}

TEST(DistributedSampler, RestoreOntoSmallerWorldContinuesStream) {
  check_restore(10, 3, 2, 1, 1, false);  // consumed 3 of 10, 7 left -> padded to 8
  check_restore(23, 3, 2, 2, 2, false);
  check_restore(23, 3, 2, 2, 3, false);
  check_restore(23, 3, 1, 4, 1, false);
  check_restore(23, 3, 2, 2, 2, true);
  check_restore(10, 3, 2, 1, 1, true);  // 7 left: drop_last cuts 1
}

TEST(DistributedSampler, RestoreOntoLargerWorldContinuesStream) {
  check_restore(10, 2, 3, 1, 1, false);  // consumed 2, 8 left -> padded to 9
  check_restore(23, 2, 3, 3, 2, false);
  check_restore(23, 2, 3, 2, 5, false);  // consumed 20, 3 left
  check_restore(23, 2, 3, 2, 5, true);
  check_restore(23, 2, 3, 3, 3, true);  // consumed 18, 5 left -> 3, 2 dropped
  check_restore(7, 1, 4, 1, 5, false);  // 2 left, padded with the first 2 of the permutation
}

TEST(DistributedSampler, FinishedEpochAfterRestore) {
  DistributedSampler s(opts(10, 2, 0));
  s.restore({3, 10});
  EXPECT_TRUE(s.remaining_indices().empty());
  EXPECT_EQ(s.next_batch(2), (Indices{s.permutation(4)[0], s.permutation(4)[2]}));
  EXPECT_EQ(s.state().epoch, 4);
  EXPECT_EQ(s.state().consumed, 4);
}

TEST(DistributedSampler, BadOptionsThrow) {
  EXPECT_THROW(DistributedSampler(opts(0, 1)), std::invalid_argument);
  EXPECT_THROW(DistributedSampler(opts(-5, 1)), std::invalid_argument);
  EXPECT_THROW(DistributedSampler(opts(10, 0)), std::invalid_argument);
  EXPECT_THROW(DistributedSampler(opts(10, 2, 2)), std::invalid_argument);
  EXPECT_THROW(DistributedSampler(opts(10, 2, -1)), std::invalid_argument);
  DistributedSampler s(opts(10, 3));
  EXPECT_THROW(s.next_batch(0), std::invalid_argument);
  EXPECT_THROW(s.next_batch(-1), std::invalid_argument);
  EXPECT_THROW(s.next_batch(5), std::invalid_argument);  // 4 per rank: never fills
  EXPECT_NO_THROW(s.next_batch(4));
  EXPECT_THROW(DistributedSampler(opts(2, 5, 0, 0, true)).next_batch(1), std::invalid_argument);
  s.restore({0, -1});
  EXPECT_THROW(s.remaining_indices(), std::invalid_argument);
  try {
    DistributedSampler bad(opts(10, 2, 3));
    FAIL() << "no throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("rank"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace vdm
