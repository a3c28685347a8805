// SplitMix64's output function (Steele, Lea and Flood, "Fast splittable pseudorandom number
// generators", OOPSLA 2014; constants from Stafford's "Mix13"): a bijection that spreads every
// input bit over the output, used to derive seeds and as SplitMix64's step.
#pragma once

#include <cstdint>

namespace vdm {

inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

constexpr uint64_t kGolden64 = 0x9e3779b97f4a7c15ULL;  // 2^64 / golden ratio, odd

}  // namespace vdm
