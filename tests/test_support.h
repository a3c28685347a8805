// Helpers shared by the test programs: a per-test temporary folder, float64 tensor options and
// relative comparisons for the test vectors. One copy here, so the unity-built test binary
// sees each name once.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

inline const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);

// A fresh folder under $TMPDIR (mkdtemp), removed with its contents when the test ends.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "vdm_test_XXXXXX").string();
    if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed in " + pattern);
    path = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path / name).string(); }
  // Writes text (a leading newline dropped, so raw strings start at line 1); returns the path.
  std::string write(const std::string& name, std::string text) const {
    if (!text.empty() && text.front() == '\n') text.erase(0, 1);
    std::ofstream(path / name) << text;
    return file(name);
  }
};

namespace vdm::testing {

// |got - want| <= rel |want| (and an absolute floor for values printed near zero).
inline ::testing::AssertionResult RelNear(double got, double want, double rel, double abs = 0.0) {
  const double tol = std::max(rel * std::abs(want), abs);
  if (std::abs(got - want) <= tol) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "got " << got << ", want " << want << " (tolerance "
                                       << tol << ", off by " << std::abs(got - want) << ")";
}

}  // namespace vdm::testing
