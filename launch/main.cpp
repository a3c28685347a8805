// The `vdm` executable: tunes the C allocator for tensor work, then hands over to the command
// line (launch/cli.cpp).
#include <malloc.h>

#include "launch/cli.h"

int main(int argc, char** argv) {
  // LibTorch's CPU tensors come straight from malloc, and a training step frees and re-allocates
  // the same few-MiB activations every time. glibc serves blocks above its mmap threshold with
  // fresh mappings and returns freed heap tops to the kernel, so every step would fault in and
  // zero those pages anew. Serving blocks up to 32 MiB (glibc's upper limit) from the heap and
  // keeping freed memory lets a step reuse the previous step's pages; the process holds its
  // peak footprint, which a training or sampling run reaches in its first step anyway.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 64 << 20);
  return vdm::run_cli(argc, argv);
}
