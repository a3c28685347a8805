// DistributedSampler: the epoch permutation from our own portable PRNG (SplitMix64 seeding
// xoshiro256**, Lemire's bounded draw, Fisher-Yates), and the padded, strided split of the
// epoch's global stream from any position in it, for any world size.
#include "data/distributed_sampler.h"

#include "data/mix64.h"

#include <algorithm>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>
#include <utility>

namespace vdm {
namespace {

// Everything below is plain 64-bit unsigned arithmetic (wrap-around is defined), so the
// permutation is the same on every platform and compiler; std:: distributions and std::shuffle
// are implementation-defined and torch's generator changes between versions.

constexpr uint64_t kGolden = kGolden64;
// Keeps the data order apart from other streams that may be seeded from the same config seed.
constexpr uint64_t kSamplerDomain = 0x5ad15a3b1e5eed01ULL;

uint64_t epoch_key(uint64_t seed, int64_t epoch) {
  return mix64(mix64(seed ^ kSamplerDomain) + static_cast<uint64_t>(epoch) * kGolden);
}

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

// xoshiro256** 1.0 (Blackman and Vigna, "Scrambled linear pseudorandom number generators",
// ACM TOMS 2021). Its state is filled by SplitMix64, as the authors recommend, so that even a
// key of 0 gives a non-zero state with well-mixed bits.
class Xoshiro256ss {
 public:
  explicit Xoshiro256ss(uint64_t key) {
    for (auto& word : s_) {
      key += kGolden;
      word = mix64(key);
    }
  }

  uint64_t next() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

 private:
  uint64_t s_[4];
};

// The full 128-bit product from 32-bit halves: unsigned __int128 is not available everywhere
// (MSVC), and the result must not depend on which path a compiler takes.
void mul_64x64_128(uint64_t a, uint64_t b, uint64_t& hi, uint64_t& lo) {
  const uint64_t a_lo = a & 0xffffffffULL, a_hi = a >> 32;
  const uint64_t b_lo = b & 0xffffffffULL, b_hi = b >> 32;
  const uint64_t p0 = a_lo * b_lo, p1 = a_lo * b_hi, p2 = a_hi * b_lo, p3 = a_hi * b_hi;
  const uint64_t mid = (p0 >> 32) + (p1 & 0xffffffffULL) + (p2 & 0xffffffffULL);
  lo = (p0 & 0xffffffffULL) | (mid << 32);
  hi = p3 + (p1 >> 32) + (p2 >> 32) + (mid >> 32);
}

// Uniform in [0, bound) without modulo bias: Lemire, "Fast random integer generation in an
// interval", ACM TOMS 2019. The rejection threshold (2^64 mod bound) is only computed in the
// rare case the low word falls below bound, which keeps the common path division-free.
uint64_t bounded(Xoshiro256ss& rng, uint64_t bound) {
  uint64_t hi, lo;
  mul_64x64_128(rng.next(), bound, hi, lo);
  if (lo < bound) {
    const uint64_t threshold = (0 - bound) % bound;
    while (lo < threshold) mul_64x64_128(rng.next(), bound, hi, lo);
  }
  return hi;
}

// The length of this epoch's padded (or truncated) stream from `consumed` on, for `world`
// ranks: a multiple of world, so that every rank gets the same count. Padding repeats the
// start of the permutation; with drop_last the tail is cut instead, so no index is ever read
// twice in an epoch, even across a change of world size.
int64_t remaining_stream_length(const SamplerOptions& o, int64_t consumed) {
  const int64_t left = o.dataset_size - consumed;
  if (left <= 0) return 0;
  return o.drop_last ? left / o.world * o.world : (left + o.world - 1) / o.world * o.world;
}

std::vector<int64_t> make_permutation(const SamplerOptions& o, int64_t epoch) {
  const int64_t n = o.dataset_size;
  std::vector<int64_t> perm(static_cast<size_t>(n));
  std::iota(perm.begin(), perm.end(), int64_t{0});
  if (!o.shuffle) return perm;
  // Fisher-Yates (Durstenfeld's in-place form), from the top down as in Knuth's Algorithm P.
  Xoshiro256ss rng(epoch_key(o.seed, epoch));
  for (int64_t i = n - 1; i > 0; --i) {
    const auto j = static_cast<int64_t>(bounded(rng, static_cast<uint64_t>(i) + 1));
    std::swap(perm[static_cast<size_t>(i)], perm[static_cast<size_t>(j)]);
  }
  return perm;
}

// Shuffling ImageNet's 1.28M indices takes tens of milliseconds, far too long to redo for every
// batch, and the header keeps no cache. One permutation per thread is kept instead: lock-free,
// and a sampler is used from one thread at a time anyway. The reference is valid until this
// thread asks for a different (dataset, seed, epoch).
const std::vector<int64_t>& cached_permutation(const SamplerOptions& o, int64_t epoch) {
  struct Entry {
    bool valid = false;
    int64_t dataset_size = 0, epoch = 0;
    uint64_t seed = 0;
    bool shuffle = false;
    std::vector<int64_t> perm;
  };
  thread_local Entry entry;
  if (!entry.valid || entry.dataset_size != o.dataset_size || entry.epoch != epoch ||
      entry.seed != o.seed || entry.shuffle != o.shuffle) {
    entry.valid = false;  // stays invalid if make_permutation throws (bad_alloc)
    entry.perm = make_permutation(o, epoch);
    entry.dataset_size = o.dataset_size;
    entry.epoch = epoch;
    entry.seed = o.seed;
    entry.shuffle = o.shuffle;
    entry.valid = true;
  }
  return entry.perm;
}

// Up to `count` of this rank's indices from stream position `consumed` on. Position p >= n is
// padding and wraps to the start of the permutation (p mod n): the positions PyTorch pads
// with, cyclically when the padding is longer than the dataset.
std::vector<int64_t> take(const SamplerOptions& o, const SamplerState& state, int64_t count) {
  if (state.consumed < 0)
    throw std::invalid_argument("DistributedSampler: restored state has consumed = " +
                                std::to_string(state.consumed) + " < 0");
  const int64_t per_rank = remaining_stream_length(o, state.consumed) / o.world;
  count = std::min(count, per_rank);
  if (count <= 0) return {};
  const std::vector<int64_t>& perm = cached_permutation(o, state.epoch);
  std::vector<int64_t> out(static_cast<size_t>(count));
  int64_t p = state.consumed + o.rank;
  for (auto& index : out) {
    index = perm[static_cast<size_t>(p % o.dataset_size)];
    p += o.world;
  }
  return out;
}

}  // namespace

DistributedSampler::DistributedSampler(SamplerOptions options) : options_(options) {
  if (options_.dataset_size < 1)
    throw std::invalid_argument("DistributedSampler: dataset_size must be >= 1, got " +
                                std::to_string(options_.dataset_size));
  if (options_.world < 1)
    throw std::invalid_argument("DistributedSampler: world must be >= 1, got " +
                                std::to_string(options_.world));
  if (options_.rank < 0 || options_.rank >= options_.world)
    throw std::invalid_argument("DistributedSampler: rank must be in [0, " +
                                std::to_string(options_.world) + "), got " +
                                std::to_string(options_.rank));
}

std::vector<int64_t> DistributedSampler::permutation(int64_t epoch) const {
  return cached_permutation(options_, epoch);
}

std::vector<int64_t> DistributedSampler::remaining_indices() const {
  return take(options_, state_, std::numeric_limits<int64_t>::max());
}

std::vector<int64_t> DistributedSampler::next_batch(int64_t batch) {
  if (batch < 1)
    throw std::invalid_argument("DistributedSampler: batch must be >= 1, got " +
                                std::to_string(batch));
  // Otherwise no epoch could ever fill a batch and the roll-over below would never end.
  if (batch > samples_per_rank())
    throw std::invalid_argument(
        "DistributedSampler: batch " + std::to_string(batch) + " exceeds the " +
        std::to_string(samples_per_rank()) + " samples per rank in an epoch (dataset_size " +
        std::to_string(options_.dataset_size) + ", world " + std::to_string(options_.world) +
        (options_.drop_last ? ", drop_last)" : ")"));
  std::vector<int64_t> out = take(options_, state_, batch);
  if (static_cast<int64_t>(out.size()) < batch) {
    state_.epoch += 1;
    state_.consumed = 0;
    out = take(options_, state_, batch);
  }
  state_.consumed += batch * options_.world;
  return out;
}

int64_t DistributedSampler::samples_per_rank() const {
  return remaining_stream_length(options_, 0) / options_.world;
}

}  // namespace vdm
