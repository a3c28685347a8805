// Small helpers shared by the unit tests: relative comparisons for the test vectors.
#pragma once

#include <gtest/gtest.h>

#include <cmath>

namespace vdm::testing {

// |got - want| <= rel |want| (and an absolute floor for values printed near zero).
inline ::testing::AssertionResult RelNear(double got, double want, double rel, double abs = 0.0) {
  const double tol = std::max(rel * std::abs(want), abs);
  if (std::abs(got - want) <= tol) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "got " << got << ", want " << want << " (tolerance "
                                       << tol << ", off by " << std::abs(got - want) << ")";
}

}  // namespace vdm::testing
