// numpy's .npz files (a zip of .npy arrays, stored or deflated) read and written through libzip:
// the format of FID reference statistics from pytorch-fid and EDM. Reads .npy v1/v2/v3 with
// dtype '<f8' or '<f4' in C or Fortran order; writes v1 '<f8' in C order.
#pragma once

#include <torch/types.h>

#include <map>
#include <stdexcept>
#include <string>

namespace vdm {

// A file that is missing, not a zip archive, or holds an .npy array this reader does not take.
// what() names the file (and the array) and says what was expected.
struct NpzError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Every array in the archive, keyed by name without ".npy", as contiguous CPU tensors of the
// stored dtype (float64 or float32). Throws NpzError.
std::map<std::string, torch::Tensor> read_npz(const std::string& path);

// Writes the arrays (any floating dtype, any device; stored as float64) as name.npy entries,
// deflated when compress is set (numpy.savez_compressed) else stored (numpy.savez). The file
// appears atomically.
void write_npz(const std::string& path, const std::map<std::string, torch::Tensor>& arrays,
               bool compress = false);

// One .npy file's bytes <-> a tensor; `what` names the array in messages.
torch::Tensor parse_npy(const std::string& bytes, const std::string& what);
std::string format_npy(const torch::Tensor& array);

}  // namespace vdm
