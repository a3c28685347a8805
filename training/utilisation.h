// How much of the machine a run uses: the device's peak FLOP/s (the denominator of MFU) and the
// peak memory of this process, host and device. The trainer puts both in metrics.jsonl.
#pragma once

#include <c10/core/Device.h>

namespace vdm {

// FLOP/s one rank's device can reach in the dtype the network runs in. configured_tflops > 0
// is taken as given. CUDA: SM count x clock x the architecture's dense rate per SM and clock
// (bf16 tensor cores; for float32 TF32 tensor cores when cuDNN may use them, as LibTorch's
// default allows, else the FP32 units). CPU: measured once with a 3x3 convolution on this
// rank's threads (all ranks measure at the same time, so each sees the cores it will share).
double device_peak_flops(const c10::Device& device, bool bf16, double configured_tflops);

// The largest resident set of this process so far, in MiB (getrusage).
double peak_host_memory_mib();
// The most the CUDA caching allocator has had allocated on `device`, in MiB; 0 on CPU.
double peak_device_memory_mib(const c10::Device& device);

}  // namespace vdm
