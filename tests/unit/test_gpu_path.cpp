// The parts of the CUDA path that run on the CPU too: the per-forward bf16 autocast scope, loading
// a checkpoint written on a GPU, the one-GPU-per-rank rule, fused attention, and eps_hat in the
// latent's dtype when the network answers in bf16.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <zip.h>

#include <map>
#include <sstream>
#include <string>

#include "distributed/device_assignment.h"
#include "evaluation/eps_predictor.h"
#include "models/attention.h"
#include "objectives/parameterisation.h"
#include "training/autocast.h"
#include "training/train_state.h"

namespace vdm {
namespace {

// ---- autocast --------------------------------------------------------------------------------

// The trainer's pattern: forward under the scope, then an in-place optimiser step outside it.
// Autocast caches the bf16 copy of each weight for as long as autocast stays on; one scope for
// the whole loop (the old trainer) would feed the second forward the first step's weights.
TEST(Autocast, EachForwardSeesTheUpdatedWeights) {
  torch::manual_seed(0);
  torch::nn::Conv2d conv(torch::nn::Conv2dOptions(2, 4, 3).padding(1));
  const auto x = torch::randn({2, 2, 6, 6});
  torch::Tensor first;
  {
    AutocastScope autocast(c10::kCPU, true);
    first = conv(x);
  }
  EXPECT_EQ(first.scalar_type(), torch::kBFloat16);
  {
    torch::NoGradGuard no_grad;
    conv->weight.add_(1.0);  // what AdamW does
  }
  torch::Tensor second;
  {
    AutocastScope autocast(c10::kCPU, true);
    second = conv(x);
  }
  const auto expected = torch::nn::functional::conv2d(
      x, conv->weight, torch::nn::functional::Conv2dFuncOptions().bias(conv->bias).padding(1));
  EXPECT_LT((second.to(torch::kFloat) - expected).abs().max().item<double>(), 0.2);
  EXPECT_GT((second - first).to(torch::kFloat).abs().max().item<double>(), 1.0);
}

// The failure the scope exists to prevent: inside one long-lived scope (the old trainer's, built
// once before the loop) the cached copy is stale, and the second forward repeats the first.
TEST(Autocast, OneLongScopeWouldTrainOnStaleWeights) {
  torch::manual_seed(0);
  torch::nn::Conv2d conv(torch::nn::Conv2dOptions(2, 4, 3).padding(1));
  const auto x = torch::randn({2, 2, 6, 6});
  AutocastScope autocast(c10::kCPU, true);
  const auto first = conv(x);
  {
    torch::NoGradGuard no_grad;
    conv->weight.add_(1.0);
  }
  EXPECT_TRUE(torch::equal(conv(x), first));
}

TEST(Autocast, DisabledScopeAndNestingLeaveFloat32) {
  torch::nn::Conv2d conv(torch::nn::Conv2dOptions(2, 4, 3));
  const auto x = torch::randn({1, 2, 5, 5});
  {
    AutocastScope off(c10::kCPU, false);
    EXPECT_EQ(conv(x).scalar_type(), torch::kFloat);
  }
  {
    AutocastScope outer(c10::kCPU, true);
    { AutocastScope inner(c10::kCPU, true); }
    EXPECT_EQ(conv(x).scalar_type(), torch::kBFloat16);  // the inner scope left it on
  }
  EXPECT_EQ(conv(x).scalar_type(), torch::kFloat);
  EXPECT_THROW(AutocastScope(c10::kMeta, true), std::invalid_argument);
}

// ---- checkpoints written on a GPU --------------------------------------------------------------

// Rewrites a LibTorch archive as if its tensors had been saved from cuda:0: the pickled storage
// location "cpu" becomes "cuda:0" (pickle BINUNICODE: 'X', 4-byte length, bytes).
std::string as_if_saved_on_cuda(const std::string& archive) {
  zip_error_t error;
  zip_error_init(&error);
  zip_source_t* src = zip_source_buffer_create(archive.data(), archive.size(), 0, &error);
  zip_t* in = zip_open_from_source(src, ZIP_RDONLY, &error);
  if (!in) throw std::runtime_error("not a zip archive");
  std::vector<std::pair<std::string, std::string>> entries;
  for (zip_int64_t i = 0; i < zip_get_num_entries(in, 0); ++i) {
    zip_stat_t st;
    zip_stat_index(in, zip_uint64_t(i), 0, &st);
    std::string bytes(st.size, '\0');
    zip_file_t* f = zip_fopen_index(in, zip_uint64_t(i), 0);
    zip_fread(f, bytes.data(), st.size);
    zip_fclose(f);
    entries.emplace_back(st.name, bytes);
  }
  zip_close(in);
  const std::string from("X\x03\x00\x00\x00" "cpu", 8), to("X\x06\x00\x00\x00" "cuda:0", 11);
  int replaced = 0;
  for (auto& [name, bytes] : entries) {
    if (name.size() < 8 || name.substr(name.size() - 8) != "data.pkl") continue;
    for (size_t at = bytes.find(from); at != std::string::npos; at = bytes.find(from, at + to.size())) {
      bytes.replace(at, from.size(), to);
      ++replaced;
    }
  }
  if (replaced == 0) throw std::runtime_error("no tensor location found in the archive");

  zip_source_t* out_src = zip_source_buffer_create(nullptr, 0, 0, &error);
  zip_source_keep(out_src);
  zip_t* out = zip_open_from_source(out_src, ZIP_TRUNCATE, &error);
  for (auto& [name, bytes] : entries) {
    zip_source_t* s = zip_source_buffer(out, bytes.data(), bytes.size(), 0);
    const zip_int64_t index = zip_file_add(out, name.c_str(), s, ZIP_FL_OVERWRITE);
    zip_set_file_compression(out, zip_uint64_t(index), ZIP_CM_STORE, 0);
  }
  zip_close(out);
  zip_source_open(out_src);
  zip_source_seek(out_src, 0, SEEK_END);
  const zip_int64_t size = zip_source_tell(out_src);
  zip_source_seek(out_src, 0, SEEK_SET);
  std::string result(size_t(size), '\0');
  zip_source_read(out_src, result.data(), zip_uint64_t(size));
  zip_source_close(out_src);
  zip_source_free(out_src);
  return result;
}

TEST(TrainState, CheckpointWrittenOnCudaLoadsOntoTheGivenDevice) {
  torch::manual_seed(1);
  torch::nn::Linear saved(3, 2);
  torch::serialize::OutputArchive archive;
  saved->save(archive);
  std::ostringstream bytes;
  archive.save_to(bytes);
  LoadedCheckpoint ckpt{7, "/run/checkpoints/step_00000007", {{"model.pt", as_if_saved_on_cuda(bytes.str())}}};

  // What the old loader did (no device): the tensors want the GPU they were saved from.
  {
    torch::serialize::InputArchive raw;
    std::istringstream in(ckpt.files.at("model.pt"));
    EXPECT_ANY_THROW(raw.load_from(in));
  }
  torch::nn::Linear loaded(3, 2);
  load_module(*loaded, ckpt, "model.pt", c10::kCPU);
  EXPECT_TRUE(torch::equal(loaded->weight, saved->weight));
  EXPECT_TRUE(torch::equal(loaded->bias, saved->bias));
  EXPECT_TRUE(loaded->weight.device().is_cpu());
}

// ---- one GPU per rank --------------------------------------------------------------------------

TEST(DeviceAssignment, RanksTakeTheNodesGpusInTurn) {
  EXPECT_EQ(cuda_device_for(0, 4), 0);
  EXPECT_EQ(cuda_device_for(3, 4), 3);
  EXPECT_EQ(cuda_device_for(1, 1), 0);  // Slurm binding: each task sees its own GPU as device 0
  EXPECT_THROW(cuda_device_for(0, 0), std::runtime_error);
}

TEST(DeviceAssignment, TwoRanksOnOneGpuAreRefusedByName) {
  EXPECT_EQ(shared_gpu_problem({"0000:1a:00", "0000:1b:00"}, "node1", 2), "");
  // Per-task binding: every rank sees one device, and they are different GPUs.
  EXPECT_EQ(shared_gpu_problem({"0000:1a:00", "0000:1b:00", "0000:3d:00"}, "node1", 1), "");
  const auto problem = shared_gpu_problem({"0000:1a:00", "0000:1b:00", "0000:1a:00"}, "node7", 2);
  EXPECT_NE(problem.find("local ranks 0 and 2 on node node7"), std::string::npos) << problem;
  EXPECT_NE(problem.find("0000:1a:00"), std::string::npos) << problem;
  EXPECT_NE(problem.find("tasks_per_node"), std::string::npos) << problem;
}

// ---- attention ---------------------------------------------------------------------------------

TEST(Attention, FusedKernelMatchesMatmulSoftmax) {
  torch::manual_seed(2);
  const auto q = torch::randn({2, 4, 64, 16}), k = torch::randn({2, 4, 64, 16}), v = torch::randn({2, 4, 64, 16});
  const auto reference = reference_attention(q, k, v);
  // Against the definition, one head at a time in float64.
  const auto q0 = q[1][2].to(torch::kFloat64), k0 = k[1][2].to(torch::kFloat64), v0 = v[1][2].to(torch::kFloat64);
  const auto direct = torch::softmax(q0.matmul(k0.t()) / 4.0, -1).matmul(v0);
  EXPECT_LT((reference[1][2].to(torch::kFloat64) - direct).abs().max().item<double>(), 1e-5);
  if (!has_fused_attention()) GTEST_SKIP() << "LibTorch < 2.0 has no fused attention; only the matmul path exists";
  EXPECT_LT((dot_product_attention(q, k, v) - reference).abs().max().item<double>(), 1e-5);
}

// ---- eps_hat in the latent's dtype ---------------------------------------------------------------

// A v-predicting network that answers v = 0 in bf16: eps_hat = sigma z exactly, in float32.
// Converting in bf16 (the old code) rounds sigma z to 8 bits.
TEST(EpsPredictor, Bf16NetworkOutputIsConvertedInTheLatentsDtype) {
  torch::manual_seed(3);
  const auto param = make_parameterisation("v");
  const Denoiser zero_v = [](const torch::Tensor& in, const torch::Tensor&, const torch::Tensor&) {
    return torch::zeros_like(in);
  };
  const auto eps_fn = make_eps_fn(zero_v, *param, torch::Tensor(), 0.0, -1, torch::kBFloat16);
  const auto z = torch::randn({4, 1, 8, 8});
  const double gamma = -3.0;
  const auto eps = eps_fn(z, gamma);
  EXPECT_EQ(eps.scalar_type(), torch::kFloat);
  const double sigma = std::sqrt(1.0 / (1.0 + std::exp(-gamma)));
  EXPECT_LT((eps - sigma * z).abs().max().item<double>(), 1e-6);
}

}  // namespace
}  // namespace vdm
