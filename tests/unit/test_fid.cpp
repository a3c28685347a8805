// FID: the Frechet distance against ../shared/testvectors/fid.md (T1..T6), feature statistics
// from float64 sums, .npz reading/writing (numpy-written fixtures, stored and deflated), the
// TorchScript feature extractor on modules defined in C++, the built-in feature net, and the
// errors for bad inputs.
#include <gtest/gtest.h>
#include <torch/script.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "data/dataset.h"
#include "data/image_codec.h"
#include "evaluation/feature_extractor.h"
#include "evaluation/feature_net.h"
#include "evaluation/feature_net_training.h"
#include "evaluation/feature_stats.h"
#include "evaluation/fid_statistics.h"
#include "evaluation/frechet_distance.h"
#include "evaluation/npz.h"
#include "tests/test_support.h"

namespace vdm {
namespace {

namespace fs = std::filesystem;
using testing::RelNear;

torch::Tensor vec(std::vector<double> v) { return torch::tensor(v, kF64); }
torch::Tensor mat(std::vector<double> v, int64_t n) { return torch::tensor(v, kF64).view({n, n}); }

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The message of the exception f throws (of type E), or "" when it throws nothing.
template <class E, class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "";
}

// ---- test vectors -----------------------------------------------------------------------

TEST(FrechetDistance, T1IdenticalIsZero) {
  const auto mu = vec({0.5, -1, 2});
  const auto s = mat({2, .3, .1, .3, 1, .2, .1, .2, .5}, 3);
  EXPECT_NEAR(frechet_distance(mu, s, mu, s), 0.0, 1e-12);
}

TEST(FrechetDistance, T2Diagonal) {
  EXPECT_TRUE(RelNear(frechet_distance(vec({0, 0}), mat({1, 0, 0, 4}, 2), vec({1, 2}), mat({4, 0, 0, 9}, 2)),
                      7.0, 1e-12));
}

TEST(FrechetDistance, T3NonCommuting) {
  const double got = frechet_distance(vec({0, 0}), mat({2, 1, 1, 2}, 2), vec({1, 1}), mat({3, 0, 0, 1}, 2));
  EXPECT_TRUE(RelNear(got, 2.5166852264521173, 1e-12));
  EXPECT_TRUE(RelNear(got, 10 - 2 * std::sqrt(14.0), 1e-12));
}

TEST(FrechetDistance, T4SingularProduct) {
  EXPECT_TRUE(RelNear(frechet_distance(vec({0, 0}), mat({1, 0, 0, 0}, 2), vec({0, 0}), mat({0, 0, 0, 1}, 2)),
                      2.0, 1e-12));
}

TEST(FrechetDistance, T5FromFeaturesUsesDivisorNMinus1) {
  FeatureStats a, b;
  a.add(torch::tensor({0., 0., 2., 0., 0., 2., 2., 2.}, kF64).view({4, 2}));
  b.add(torch::tensor({1., 1., 3., 1., 1., 5., 3., 5.}, kF64).view({4, 2}));
  EXPECT_EQ(a.count(), 4);
  EXPECT_TRUE(RelNear(fid(a.gaussian(), b.gaussian()), 6.333333333333333, 1e-12));
}

TEST(FrechetDistance, T6SinCosFeatures) {
  auto A = torch::empty({64, 8}, kF64), B = torch::empty({64, 8}, kF64);
  for (int i = 0; i < 64; ++i)
    for (int j = 0; j < 8; ++j) {
      A[i][j] = std::sin(0.37 * (i + 1) * (j + 1)) + 0.1 * j;
      B[i][j] = std::cos(0.23 * (i + 1) * (j + 2)) + 0.05 * (i % 7) * (j % 3);
    }
  // Added in uneven chunks: the sums must not care how the features arrive.
  FeatureStats a, b;
  a.add(A.slice(0, 0, 10));
  a.add(A.slice(0, 10, 64));
  b.add(B.slice(0, 0, 33));
  b.add(B.slice(0, 33, 33));
  b.add(B.slice(0, 33, 64));
  const auto ga = a.gaussian(), gb = b.gaussian();
  EXPECT_TRUE(RelNear((ga.mu - gb.mu).square().sum().item<double>(), 0.9226553938372459, 1e-12));
  EXPECT_TRUE(RelNear(ga.sigma.trace().item<double>(), 4.112409917938599, 1e-12));
  EXPECT_TRUE(RelNear(gb.sigma.trace().item<double>(), 4.323617420254138, 1e-12));
  EXPECT_NEAR(fid(ga, gb), 0.98553662388645, 1e-12);
  // The same covariance as torch's two-pass estimate.
  EXPECT_TRUE(torch::allclose(ga.sigma, torch::cov(A.t()), 1e-12, 1e-14));
}

TEST(FrechetDistance, IdenticalSingularCovariancesGiveZero) {
  // 5 samples in 32 dimensions: rank 4, so 28 eigenvalues are zero but for rounding.
  auto g = at::detail::createCPUGenerator(11);
  FeatureStats s;
  s.add(torch::randn({5, 32}, g, kF64) * 3 + 1);
  const auto gs = s.gaussian();
  EXPECT_NEAR(fid(gs, gs), 0.0, 1e-12 * gs.sigma.trace().item<double>());
}

TEST(FrechetDistance, ShapeMismatchIsAClearError) {
  const auto msg = error_of<std::invalid_argument>(
      [] { frechet_distance(vec({0, 0}), torch::eye(2, kF64), vec({0, 0, 0}), torch::eye(3, kF64)); });
  EXPECT_NE(msg.find("do not match"), std::string::npos) << msg;
  const auto msg2 = error_of<std::invalid_argument>([] {
    fid(GaussianStats{vec({0, 0}), torch::eye(2, kF64)}, GaussianStats{torch::zeros({2048}, kF64),
                                                                      torch::eye(2048, kF64)});
  });
  EXPECT_NE(msg2.find("2 and 2048 feature dimensions"), std::string::npos) << msg2;
}

TEST(FeatureStats, RejectsFeaturesOfAnotherSize) {
  FeatureStats s(3);
  EXPECT_THROW(s.add(torch::zeros({2, 4})), std::invalid_argument);
  EXPECT_THROW(s.sigma(), std::runtime_error);  // no features yet
  s.add(torch::zeros({1, 3}));
  EXPECT_THROW(s.sigma(), std::runtime_error);  // one feature has no covariance
  s.reduce_to_root(nullptr);                    // a single process: unchanged
  EXPECT_EQ(s.count(), 1);
}

// ---- .npz ---------------------------------------------------------------------------------

TEST(Npz, RoundTripStoredAndDeflated) {
  TempDir dir;
  auto g = at::detail::createCPUGenerator(7);
  const auto mu = torch::randn({40}, g, kF64);
  const auto x = torch::randn({40, 40}, g, kF64);
  const GaussianStats stats{mu, x.mm(x.t())};
  save_stats(dir.file("stored.npz"), stats, false);
  save_stats(dir.file("deflated.npz"), {mu, torch::zeros({40, 40}, kF64)}, true);
  save_stats(dir.file("deflated_full.npz"), stats, true);

  for (const char* name : {"stored.npz", "deflated_full.npz"}) {
    const auto back = load_stats(dir.file(name));
    EXPECT_TRUE(torch::equal(back.mu, stats.mu)) << name;
    EXPECT_TRUE(torch::equal(back.sigma, stats.sigma)) << name;
    EXPECT_EQ(back.mu.scalar_type(), torch::kFloat64);
  }
  // Stored entries hold the .npy bytes as they are; deflated zeros shrink far below 12.8 kB.
  const auto stored = read_bytes(dir.file("stored.npz")), deflated = read_bytes(dir.file("deflated.npz"));
  EXPECT_NE(stored.find("\x93NUMPY\x01\x00"), std::string::npos);
  EXPECT_NE(stored.find("{'descr': '<f8', 'fortran_order': False, 'shape': (40, 40), }"), std::string::npos);
  EXPECT_NE(stored.find("'shape': (40,), }"), std::string::npos);
  EXPECT_EQ(deflated.find("\x93NUMPY"), std::string::npos);
  EXPECT_LT(deflated.size(), 2000u);
  EXPECT_TRUE(torch::equal(load_stats(dir.file("deflated.npz")).sigma, torch::zeros({40, 40}, kF64)));
  // The same statistics give the same bytes (fixed time stamps).
  save_stats(dir.file("again.npz"), stats, false);
  EXPECT_EQ(read_bytes(dir.file("again.npz")), stored);
}

TEST(Npz, NpyHeaderIs64ByteAlignedAndParsesBack) {
  for (auto t : {torch::tensor(3.5, kF64), torch::arange(5, kF64), torch::arange(12, kF64).view({3, 4}),
                 torch::zeros({0, 2}, kF64)}) {
    const auto bytes = format_npy(t);
    const size_t header_len = uint8_t(bytes[8]) | size_t(uint8_t(bytes[9])) << 8;
    EXPECT_EQ((10 + header_len) % 64, 0u);
    EXPECT_EQ(bytes[10 + header_len - 1], '\n');
    const auto back = parse_npy(bytes, "t");
    EXPECT_EQ(back.sizes(), t.sizes());
    EXPECT_TRUE(torch::equal(back, t));
  }
}

TEST(Npz, ReadsWhatNumpyWrote) {
  for (const char* name : {"fid_stats_numpy.npz", "fid_stats_numpy_compressed.npz"}) {
    const std::string path = std::string(VDM_SOURCE_DIR) + "/tests/fixtures/" + name;
    const auto arrays = read_npz(path);
    ASSERT_EQ(arrays.size(), 4u) << name;
    EXPECT_TRUE(torch::equal(arrays.at("mu"), vec({0.5, -1, 2}))) << name;
    EXPECT_TRUE(torch::equal(arrays.at("sigma"), mat({2, .3, .1, .3, 1, .2, .1, .2, .5}, 3))) << name;
    EXPECT_EQ(arrays.at("f32").scalar_type(), torch::kFloat32);
    EXPECT_TRUE(torch::equal(arrays.at("f32"), torch::arange(6, torch::kFloat32).view({2, 3}) / 4)) << name;
    EXPECT_TRUE(torch::equal(arrays.at("fortran"), torch::arange(6, kF64).view({2, 3}) + 0.5)) << name;
    const auto stats = load_stats(path);
    EXPECT_NEAR(fid(stats, stats), 0.0, 1e-12);
  }
}

TEST(Npz, ClearErrorsForBadFiles) {
  TempDir dir;
  write_npz(dir.file("no_mu.npz"), {{"sigma", torch::eye(3, kF64)}});
  auto msg = error_of<NpzError>([&] { load_stats(dir.file("no_mu.npz")); });
  EXPECT_NE(msg.find("no array 'mu'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("it holds: sigma"), std::string::npos) << msg;

  write_npz(dir.file("shapes.npz"), {{"mu", torch::zeros({3}, kF64)}, {"sigma", torch::eye(2, kF64)}});
  msg = error_of<NpzError>([&] { load_stats(dir.file("shapes.npz")); });
  EXPECT_NE(msg.find("mu has shape [3] and sigma [2, 2]"), std::string::npos) << msg;

  std::ofstream(dir.file("text.npz")) << "mu = 1, sigma = 2\n";
  msg = error_of<NpzError>([&] { load_stats(dir.file("text.npz")); });
  EXPECT_NE(msg.find("not an .npz file"), std::string::npos) << msg;

  msg = error_of<NpzError>([&] { load_stats(dir.file("missing.npz")); });
  EXPECT_NE(msg.find("missing.npz"), std::string::npos) << msg;

  std::string npy = format_npy(torch::zeros({2}, kF64));
  npy.replace(npy.find("<f8"), 3, "<i8");
  msg = error_of<NpzError>([&] { parse_npy(npy, "x"); });
  EXPECT_NE(msg.find("dtype '<i8' is not supported"), std::string::npos) << msg;
  npy = format_npy(torch::zeros({2}, kF64));
  msg = error_of<NpzError>([&] { parse_npy(npy.substr(0, npy.size() - 3), "x"); });
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
}

// ---- TorchScript feature extractors ----------------------------------------------------------

// A feature module as a user might script it: per-channel means and maxima of x / 255, and
// logits when return_features is False.
torch::jit::Module scripted_module(bool with_return_features) {
  torch::jit::Module m("Features");
  m.register_parameter("scale", torch::full({1}, 2.0), false);
  m.define(with_return_features ? R"(
def forward(self, x, return_features: bool = False):
    h = x.float() / 255.0
    f = torch.cat([torch.mean(h, [2, 3]), torch.amax(h, [2, 3])], 1) * self.scale
    if return_features:
        return f
    return torch.sum(f, 1, True)
)"
                                : R"(
def forward(self, x):
    h = x.float() / 255.0
    return torch.cat([torch.mean(h, [2, 3]), torch.amax(h, [2, 3])], 1) * self.scale
)");
  return m;
}

torch::Tensor expected_features(const torch::Tensor& rgb) {
  const auto h = rgb.to(torch::kFloat32) / 255.0;
  return torch::cat({h.mean({2, 3}), h.amax({2, 3})}, 1) * 2.0;
}

TEST(TorchScriptFeatures, ModuleDefinedInCppSavedAndLoaded) {
  TempDir dir;
  for (bool with_flag : {true, false}) {
    const std::string path = dir.file(with_flag ? "flag.pt" : "plain.pt");
    scripted_module(with_flag).save(path);
    TorchScriptFeatureExtractor extractor(path);
    EXPECT_EQ(extractor.input_channels(), 3);  // no in_channels attribute: Inception's convention
    EXPECT_EQ(extractor.dims(), 6);            // found by a probe batch
    auto g = at::detail::createCPUGenerator(3);
    const auto rgb = torch::randint(0, 256, {5, 3, 8, 8}, g, torch::kLong).to(torch::kUInt8);
    auto f = extractor.features(rgb);
    EXPECT_EQ(f.sizes(), (std::vector<int64_t>{5, 6}));
    EXPECT_TRUE(torch::allclose(f, expected_features(rgb), 1e-6, 1e-6)) << with_flag;
    // Gray images are repeated to RGB for a 3-channel network.
    const auto gray = rgb.slice(1, 0, 1);
    EXPECT_TRUE(torch::allclose(extractor.features(gray), expected_features(gray.expand({-1, 3, -1, -1})),
                                1e-6, 1e-6));
    EXPECT_NE(extractor.describe().find("6-d features"), std::string::npos);
  }
}

TEST(TorchScriptFeatures, NotTorchScriptIsAClearError) {
  TempDir dir;
  std::ofstream(dir.file("weights.pt")) << "this is not a TorchScript archive\n";
  auto msg = error_of<FeatureExtractorError>([&] { TorchScriptFeatureExtractor(dir.file("weights.pt")); });
  EXPECT_NE(msg.find("is not a TorchScript module"), std::string::npos) << msg;
  EXPECT_NE(msg.find("inception-2015-12-05.pt"), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line, no backtrace: " << msg;
  msg = error_of<FeatureExtractorError>([&] { TorchScriptFeatureExtractor(dir.file("nothing.pt")); });
  EXPECT_NE(msg.find("does not exist"), std::string::npos) << msg;
}

TEST(TorchScriptFeatures, FeatureSizeMismatchWithReferenceStats) {
  TempDir dir;
  scripted_module(true).save(dir.file("six.pt"));
  TorchScriptFeatureExtractor extractor(dir.file("six.pt"));
  FeatureStats generated(extractor.dims());
  generated.add(extractor.features(torch::randint(0, 256, {4, 3, 8, 8}, torch::kLong).to(torch::kUInt8)));
  const GaussianStats reference{torch::zeros({2048}, kF64), torch::eye(2048, kF64)};
  const auto msg = error_of<std::invalid_argument>([&] { fid(generated.gaussian(), reference); });
  EXPECT_NE(msg.find("6 and 2048 feature dimensions"), std::string::npos) << msg;
}

// ---- the built-in feature net -------------------------------------------------------------------

// Two classes anyone can tell apart: dark images with a bright top half, bright images with a
// dark left half, plus noise.
class TwoClassDataset : public Dataset {
 public:
  TwoClassDataset(int64_t n, int64_t resolution, uint64_t seed) : n_(n), r_(resolution), seed_(seed) {}
  int64_t size() const override { return n_; }
  int64_t channels() const override { return 1; }
  int64_t resolution() const override { return r_; }
  int64_t num_classes() const override { return 2; }
  int64_t label(int64_t i) const override { return i % 2; }
  void read(int64_t i, uint8_t* out) const override {
    uint64_t s = seed_ * 1000003 + uint64_t(i);
    for (int64_t y = 0; y < r_; ++y)
      for (int64_t x = 0; x < r_; ++x) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        const int noise = int(s >> 59);
        const bool bright = label(i) == 0 ? y < r_ / 2 : x >= r_ / 2;
        out[y * r_ + x] = uint8_t((bright ? 200 : 40) + noise);
      }
  }
  std::string source(int64_t i) const override { return "#" + std::to_string(i); }

 private:
  int64_t n_, r_;
  uint64_t seed_;
};

TEST(FeatureNet, TrainsSavesAndLoadsThroughTheTorchScriptPath) {
  TempDir dir;
  FeatureNetOptions o;
  o.resolution = 16;
  o.num_classes = 2;
  o.width = 4;
  o.feature_dims = 16;
  FeatureNet net(o);
  TwoClassDataset train(256, 16, 1), held_out(64, 16, 2);
  FeatureNetTrainingOptions t;
  t.steps = 40;
  t.batch_size = 16;
  int64_t reports = 0;
  const auto r = train_feature_net(net, train, &held_out, t, [&](int64_t, double) { ++reports; });
  EXPECT_EQ(reports, 1);  // step 40 (the last)
  EXPECT_GE(r.accuracy, 0.95);
  EXPECT_EQ(r.eval_samples, 64);

  net.save(dir.file("net.pt"));
  TorchScriptFeatureExtractor extractor(dir.file("net.pt"));
  EXPECT_EQ(extractor.input_channels(), 1);
  EXPECT_EQ(extractor.dims(), 16);
  auto images = torch::empty({6, 1, 16, 16}, torch::kUInt8);
  for (int64_t i = 0; i < 6; ++i) held_out.read(i, images.data_ptr<uint8_t>() + i * 256);
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::allclose(extractor.features(images), net.features(images), 1e-5, 1e-6));
  // Other sizes and RGB input are brought to the net's 16 px gray.
  EXPECT_EQ(extractor.features(torch::zeros({2, 3, 32, 32}, torch::kUInt8)).sizes(),
            (std::vector<int64_t>{2, 16}));
  EXPECT_EQ(extractor.features(torch::zeros({2, 1, 12, 12}, torch::kUInt8)).sizes(),
            (std::vector<int64_t>{2, 16}));
}

TEST(FeatureNet, RejectsAnUnlabelledOrMismatchedDataset) {
  FeatureNetOptions o;
  o.channels = 3;
  o.width = 2;
  FeatureNet net(o);
  TwoClassDataset gray(8, 16, 0);
  EXPECT_THROW(train_feature_net(net, gray, nullptr, {}), std::invalid_argument);
}

// ---- statistics of real images --------------------------------------------------------------------

TEST(FidStatistics, DatasetAndImageFolderMatchDirectEncoding) {
  TempDir dir;
  scripted_module(true).save(dir.file("f.pt"));
  TorchScriptFeatureExtractor extractor(dir.file("f.pt"));
  TwoClassDataset data(11, 8, 5);
  FeatureEncodingOptions eo;
  eo.batch_size = 4;

  auto all = torch::empty({11, 1, 8, 8}, torch::kUInt8);
  for (int64_t i = 0; i < 11; ++i) data.read(i, all.data_ptr<uint8_t>() + i * 64);
  FeatureStats direct;
  direct.add(expected_features(all.expand({-1, 3, -1, -1})));
  const auto from_dataset = dataset_feature_stats(extractor, data, nullptr, 0, 1, eo).gaussian();
  EXPECT_TRUE(torch::allclose(from_dataset.mu, direct.mu(), 1e-6, 1e-7));
  EXPECT_TRUE(torch::allclose(from_dataset.sigma, direct.sigma(), 1e-6, 1e-7));

  // The same images as PNG files, two of them 12 px (a batch of their own), in a nested folder.
  fs::create_directories(dir.path / "imgs" / "sub");
  FeatureStats direct_files;
  for (int64_t i = 0; i < 11; ++i) {
    Image img;
    img.channels = 1;
    img.width = img.height = i < 2 ? 12 : 8;
    img.pixels.assign(size_t(img.width * img.height), uint8_t(10 * i));
    if (i >= 2) std::memcpy(img.pixels.data(), all[i].data_ptr<uint8_t>(), 64);
    write_file(dir.file((i % 3 ? "imgs/" : "imgs/sub/") + std::string("img") + char('a' + i) + ".png"), encode_png(img));
    const auto t = torch::from_blob(img.pixels.data(), {1, 1, img.height, img.width}, torch::kUInt8);
    direct_files.add(expected_features(t.expand({-1, 3, -1, -1})));
  }
  std::ofstream(dir.file("imgs/notes.txt")) << "not an image";
  const auto files = list_image_files(dir.file("imgs"));
  ASSERT_EQ(files.size(), 11u);
  const auto from_files = image_files_feature_stats(extractor, files, nullptr, 0, 1, eo);
  EXPECT_EQ(from_files.count(), 11);
  EXPECT_TRUE(torch::allclose(from_files.mu(), direct_files.mu(), 1e-6, 1e-7));
  EXPECT_TRUE(torch::allclose(from_files.sigma(), direct_files.sigma(), 1e-6, 1e-7));
  EXPECT_THROW(list_image_files(dir.file("nowhere")), std::runtime_error);
}

}  // namespace
}  // namespace vdm
