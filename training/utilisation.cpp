// Peak FLOP/s and peak memory (see utilisation.h).
#include "training/utilisation.h"

#include <ATen/CPUGeneratorImpl.h>
#include <sys/resource.h>
#include <torch/torch.h>

#include <chrono>

#ifdef VDM_TORCH_HAS_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <cuda_runtime_api.h>
#endif

namespace vdm {
namespace {

// A 3x3 convolution of 128 channels at 16 px, the kind of layer that carries a U-Net's FLOPs,
// through the same oneDNN kernels as training (a plain matrix product would measure whatever
// BLAS LibTorch was linked with, which for Debian's is far slower than its convolutions).
double measured_cpu_peak(bool bf16) {
  torch::NoGradGuard no_grad;
  const int64_t batch = 8, channels = 128, size = 16;
  const auto dtype = bf16 ? torch::kBFloat16 : torch::kFloat32;
  // Inputs from a private generator: the default one is the dropout stream, which a resumed run
  // must find exactly where the checkpoint left it.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(0);
  auto x = at::randn({batch, channels, size, size}, gen, torch::kFloat32).to(dtype);
  auto w = (at::randn({channels, channels, 3, 3}, gen, torch::kFloat32) * 0.01).to(dtype);
  torch::conv2d(x, w, {}, 1, 1);  // warm-up: thread pool, oneDNN primitive cache
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  int64_t runs = 0;
  double seconds = 0;
  while (seconds < 0.25) {
    torch::conv2d(x, w, {}, 1, 1);
    ++runs;
    seconds = std::chrono::duration<double>(Clock::now() - start).count();
  }
  return 2.0 * double(batch * channels * channels * 9 * size * size) * double(runs) / seconds;
}

#ifdef VDM_TORCH_HAS_CUDA
// Dense multiply-add rate per SM and clock, counted as 2 FLOPs each, from NVIDIA's architecture
// whitepapers (V100, T4, A100, GA10x/AD10x, H100, B200): {FP32 units, TF32 tensor, BF16 tensor}.
// Before Ampere there are no TF32 or BF16 tensor cores: those dtypes run at the FP32 rate.
struct SmRate {
  double fp32, tf32, bf16;
};
SmRate sm_rate(int major, int minor) {
  if (major == 10) return {256, 2048, 8192};  // B100/B200
  if (major == 9) return {256, 2048, 4096};   // H100/H200
  if (major == 8 && minor == 0) return {128, 1024, 2048};  // A100
  if (major >= 8) return {256, 512, 1024};   // GA10x, AD10x, consumer Blackwell
  return {128, 128, 128};                     // Volta, Turing
}

double cuda_peak(const c10::Device& device, bool bf16) {
  const int index = device.index() < 0 ? 0 : int(device.index());
  const cudaDeviceProp* prop = at::cuda::getDeviceProperties(index);
  int khz = 0;
  if (cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, index) != cudaSuccess || khz <= 0) return 0;
  const SmRate r = sm_rate(prop->major, prop->minor);
  const double per_clock = bf16 ? r.bf16 : (at::globalContext().allowTF32CuDNN() ? r.tf32 : r.fp32);
  return double(prop->multiProcessorCount) * double(khz) * 1e3 * per_clock;
}
#endif

}  // namespace

double device_peak_flops(const c10::Device& device, bool bf16, double configured_tflops) {
  if (configured_tflops > 0) return configured_tflops * 1e12;
#ifdef VDM_TORCH_HAS_CUDA
  if (device.is_cuda()) return cuda_peak(device, bf16);
#endif
  if (device.is_cuda()) return 0;  // unknown: MFU is left out
  return measured_cpu_peak(bf16);
}

double peak_host_memory_mib() {
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return double(usage.ru_maxrss) / 1024.0;  // Linux reports KiB
}

double peak_device_memory_mib(const c10::Device& device) {
#ifdef VDM_TORCH_HAS_CUDA
  if (device.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index() < 0 ? 0 : device.index());
    return double(stats.allocated_bytes[0].peak) / (1024.0 * 1024.0);  // [0]: StatType::AGGREGATE
  }
#endif
  (void)device;
  return 0;
}

}  // namespace vdm
