// `vdm fid A B`, `vdm fid-stats SOURCE --inception PATH --out STATS.npz` and `vdm fid-features
// train [CONFIG] [key=value ...] --out PATH`: FID between statistics files or image folders, the
// statistics of a folder or a config's dataset split, and the built-in feature network.
// Encoding runs on every MPI rank when started under mpirun/srun (each rank a share).
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>

#include "data/dataset.h"
#include "distributed/process_context.h"
#include "evaluation/feature_extractor.h"
#include "evaluation/feature_net.h"
#include "evaluation/feature_net_training.h"
#include "evaluation/feature_stats.h"
#include "evaluation/fid_statistics.h"
#include "evaluation/npz.h"
#include "launch/commands.h"
#include "launch/config.h"
#include "vdm_builtin_configs.h"

namespace vdm {
namespace {

namespace fs = std::filesystem;

struct EncodeArgs {
  std::string features;
  std::string device = "cpu";
  int64_t batch_size = 64, num = 0, threads = 0;
};

void add_encode_options(CLI::App* cmd, EncodeArgs& e) {
  cmd->add_option("--features,--inception", e.features,
                  "feature network: TorchScript file (NVlabs' inception-2015-12-05.pt, or one "
                  "from `vdm fid-features train`)");
  cmd->add_option("--device", e.device, "where the feature network runs")->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->add_option("--batch-size", e.batch_size, "images per forward pass, per rank")->check(CLI::Range(1, 100000));
  cmd->add_option("--num", e.num, "use only the first N images (0: all)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--threads", e.threads, "intra-op threads (0: LibTorch's default)")->check(CLI::Range(0, 1024));
}

// Bad input files are the user's to fix: they end like config errors (exit 2, one message).
template <class F>
auto as_config_error(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const NpzError& e) {
    throw UsageError(e.what());
  } catch (const FeatureExtractorError& e) {
    throw UsageError(e.what());
  }
}

// Loaded on the CPU before MPI starts, so a wrong file ends with one message, not an MPI_Abort.
std::shared_ptr<TorchScriptFeatureExtractor> load_extractor(const EncodeArgs& e, const std::string& why) {
  if (e.features.empty())
    throw UsageError(why + " needs a feature network: add --features PATH (or --inception PATH; "
                      "NVlabs' inception-2015-12-05.pt, or a file from `vdm fid-features train`)");
  if (e.threads > 0) torch::set_num_threads(int(e.threads));
  return as_config_error([&] { return std::make_shared<TorchScriptFeatureExtractor>(e.features); });
}

void check_dims(FeatureExtractor& extractor, const std::string& features_path, const GaussianStats& ref,
                const std::string& ref_path) {
  const int64_t d = as_config_error([&] { return extractor.dims(); });
  if (d != ref.dims())
    throw UsageError("feature network " + features_path + " gives " + std::to_string(d) +
                      "-d features, but " + ref_path + " holds " + std::to_string(ref.dims()) +
                      "-d statistics; both sides of an FID must come from the same network "
                      "(2048-d: Inception, as in pytorch-fid and EDM reference files)");
}

// Runs body(rank, world, comm) on every rank; rank 0's result is returned there. The
// extractor moves to the rank's device first.
template <class Body>
int with_ranks(const EncodeArgs& e, TorchScriptFeatureExtractor& extractor, Body&& body) {
  ProcessContextOptions po;
  po.device = e.device;
  ProcessContext context(nullptr, nullptr, po);
  configure_rank_logging(context.rank(), context.world());
  return run_or_abort([&] {
    extractor.to(context.device());
    const auto comm = make_host_communicator();
    body(context.rank(), context.world(), context.world() > 1 ? comm.get() : nullptr);
    return 0;
  });
}

EncodingProgress log_progress(const std::string& what) {
  auto last = std::make_shared<std::chrono::steady_clock::time_point>(std::chrono::steady_clock::now());
  return [what, last](int64_t done, int64_t total) {
    const auto now = std::chrono::steady_clock::now();
    if (done < total && now - *last < std::chrono::seconds(10)) return;
    *last = now;
    spdlog::info("{}: {}/{} images encoded on this rank", what, done, total);
  };
}

// ---- vdm fid -----------------------------------------------------------------------------

struct FidArgs {
  std::string a, b;
  EncodeArgs encode;
};

int run_fid(const FidArgs& args) {
  const std::string paths[2] = {args.a, args.b};
  std::optional<GaussianStats> stats[2];
  for (int i = 0; i < 2; ++i) {
    if (!fs::exists(paths[i]))
      throw UsageError(paths[i] + " does not exist; give an .npz statistics file or a folder of images");
    if (!fs::is_directory(paths[i])) stats[i] = as_config_error([&] { return load_stats(paths[i]); });
  }
  if (stats[0] && stats[1]) {
    if (stats[0]->dims() != stats[1]->dims())
      throw UsageError(paths[0] + " holds " + std::to_string(stats[0]->dims()) + "-d statistics and " +
                        paths[1] + " " + std::to_string(stats[1]->dims()) + "-d; both must come "
                        "from the same feature network");
    // Clamped: identical inputs give 0 up to rounding, which may fall just below it.
    std::printf("%.6f\n", std::max(0.0, fid(*stats[0], *stats[1])));
    return 0;
  }
  const std::string folder = stats[0] ? paths[1] : paths[0];
  auto extractor = load_extractor(args.encode, "the image folder " + folder);
  for (int i = 0; i < 2; ++i)
    if (stats[i]) check_dims(*extractor, args.encode.features, *stats[i], paths[i]);
  std::vector<std::string> files[2];
  for (int i = 0; i < 2; ++i) {
    if (stats[i]) continue;
    try {
      files[i] = list_image_files(paths[i]);
    } catch (const std::runtime_error& e) {
      throw UsageError(e.what());
    }
  }
  return with_ranks(args.encode, *extractor, [&](int rank, int world, Communicator* comm) {
    FeatureEncodingOptions eo;
    eo.batch_size = args.encode.batch_size;
    eo.max_samples = args.encode.num;
    for (int i = 0; i < 2; ++i) {
      if (stats[i]) continue;
      const auto s = image_files_feature_stats(*extractor, files[i], comm, rank, world, eo, log_progress(paths[i]));
      if (rank == 0) {
        if (s.count() < 2)
          throw std::runtime_error(paths[i] + ": an FID needs at least 2 images, got " + std::to_string(s.count()));
        spdlog::info("{}: {} images, {}", paths[i], s.count(), extractor->describe());
        stats[i] = s.gaussian();
      }
    }
    if (rank == 0) std::printf("%.6f\n", std::max(0.0, fid(*stats[0], *stats[1])));
  });
}

// ---- vdm fid-stats -------------------------------------------------------------------------

struct StatsArgs {
  std::vector<std::string> positional;  // SOURCE, or with --config: overrides
  std::string config, split, out;
  bool compress = false;
  EncodeArgs encode;
};

RunConfig load_any_config(const std::string& path, const std::vector<std::string>& overrides) {
  if (path.empty() || (path == "quickstart" && !fs::exists(path)))
    return parse_config(kQuickstartConfig, "(built-in quickstart config)", overrides);
  return load_config(path, overrides);
}

// The config's dataset, with another split when one is named.
DataOptions data_options(const RunConfig& cfg, const std::string& split) {
  DataOptions d = cfg.train.data;
  if (!split.empty()) d.split = split;
  return d;
}

int run_fid_stats(const StatsArgs& args) {
  DatasetPtr dataset;
  std::vector<std::string> files;
  std::string source;
  if (!args.config.empty()) {
    const RunConfig cfg = load_any_config(args.config, args.positional);
    check_paths(cfg);
    const DataOptions d = data_options(cfg, args.split);
    source = d.path + " (" + d.format + ", split " + d.split + ", " + std::to_string(d.resolution) + " px)";
    try {
      dataset = open_dataset(d);
    } catch (const std::runtime_error& e) {
      throw UsageError(e.what());
    }
  } else {
    if (args.positional.size() != 1)
      throw UsageError("vdm fid-stats: give one SOURCE (a folder of images), or --config CONFIG "
                        "[key=value ...] for a config's dataset");
    source = args.positional[0];
    if (!fs::is_directory(source))
      throw UsageError(source + " is not a folder of images; for a dataset in idx or packed "
                        "format use --config CONFIG (and --split)");
    try {
      files = list_image_files(source);
    } catch (const std::runtime_error& e) {
      throw UsageError(e.what());
    }
  }
  auto extractor = load_extractor(args.encode, "vdm fid-stats");
  const auto out_dir = fs::path(args.out).parent_path();
  if (!out_dir.empty() && !fs::is_directory(out_dir))
    throw UsageError("--out " + args.out + ": folder " + out_dir.string() + " does not exist");
  return with_ranks(args.encode, *extractor, [&](int rank, int world, Communicator* comm) {
    FeatureEncodingOptions eo;
    eo.batch_size = args.encode.batch_size;
    eo.max_samples = args.encode.num;
    const auto s = dataset ? dataset_feature_stats(*extractor, *dataset, comm, rank, world, eo, log_progress(source))
                           : image_files_feature_stats(*extractor, files, comm, rank, world, eo, log_progress(source));
    if (rank != 0) return;
    if (s.count() < 2)
      throw std::runtime_error(source + ": statistics need at least 2 images, got " + std::to_string(s.count()));
    save_stats(args.out, s.gaussian(), args.compress);
    std::printf("wrote %s: %lld images from %s, %s\n", args.out.c_str(), static_cast<long long>(s.count()),
                source.c_str(), extractor->describe().c_str());
  });
}

// ---- vdm fid-features train -----------------------------------------------------------------

struct FeaturesTrainArgs {
  std::vector<std::string> positional;  // [CONFIG] then overrides
  std::string out;
  FeatureNetOptions net;
  FeatureNetTrainingOptions train;
  int64_t threads = 0;
};

int run_features_train(FeaturesTrainArgs args) {
  std::string config;
  std::vector<std::string> overrides = args.positional;
  if (!overrides.empty() && overrides.front().find('=') == std::string::npos) {
    config = overrides.front();
    overrides.erase(overrides.begin());
  }
  const RunConfig cfg = load_any_config(config, overrides);
  check_paths(cfg);
  const auto out_dir = fs::path(args.out).parent_path();
  if (!out_dir.empty() && !fs::is_directory(out_dir))
    throw UsageError("--out " + args.out + ": folder " + out_dir.string() + " does not exist");
  DatasetPtr train, held_out;
  try {
    train = open_dataset(cfg.train.data);
    held_out = open_dataset(cfg.train.eval_data);
  } catch (const std::runtime_error& e) {
    throw UsageError(e.what());
  }
  if (train->num_classes() < 2)
    throw UsageError(cfg.train.data.path + ": the dataset has no class labels; the feature network "
                      "learns by classifying (idx, or an image folder with one folder per class)");
  torch::set_num_threads(int(args.threads > 0 ? args.threads : cfg.train.threads));
  args.net.channels = train->channels();
  args.net.resolution = train->resolution();
  args.net.num_classes = std::max(train->num_classes(), held_out->num_classes());
  args.net.seed = cfg.seed;
  args.train.seed = cfg.seed;
  spdlog::info("training the feature network on {} ({} images, {} classes, {} px, {} channel(s)) for {} steps",
               cfg.train.data.path, train->size(), args.net.num_classes, args.net.resolution,
               args.net.channels, args.train.steps);
  FeatureNet net(args.net);
  const auto r = train_feature_net(net, *train, held_out.get(), args.train, [&](int64_t step, double loss) {
    spdlog::info("step {}/{}: loss {:.4f}", step, args.train.steps, loss);
  });
  net.save(args.out);
  std::printf("wrote %s: %lld-d features, %lld px, %lld channel(s); %lld steps in %.1f s, final loss %.4f\n",
              args.out.c_str(), static_cast<long long>(args.net.feature_dims),
              static_cast<long long>(args.net.resolution), static_cast<long long>(args.net.channels),
              static_cast<long long>(args.train.steps), r.seconds, r.final_loss);
  std::printf("held-out accuracy: %.4f (%lld images of split %s)\n", r.accuracy,
              static_cast<long long>(r.eval_samples), cfg.train.eval_data.split.c_str());
  return 0;
}

}  // namespace

void add_fid_command(CLI::App& app) {
  {
    auto a = std::make_shared<FidArgs>();
    auto* cmd = app.add_subcommand("fid", "FID between two .npz statistics files or image folders "
                                          "(prints the FID on the last line)");
    cmd->add_option("A", a->a, ".npz statistics (arrays mu, sigma) or a folder of images")->required();
    cmd->add_option("B", a->b, ".npz statistics (arrays mu, sigma) or a folder of images")->required();
    add_encode_options(cmd, a->encode);
    cmd->callback([a] { throw CommandExit{run_fid(*a)}; });
  }
  {
    auto a = std::make_shared<StatsArgs>();
    auto* cmd = app.add_subcommand("fid-stats", "FID statistics (mu, sigma as .npz) of an image folder "
                                                "or a config's dataset split");
    cmd->add_option("source", a->positional,
                    "a folder of images; with --config: key.path=value overrides instead");
    cmd->add_option("--config", a->config,
                    "use this config's dataset (data.*); 'quickstart' is the built-in one");
    cmd->add_option("--split", a->split, "with --config: the split (default data.split)");
    cmd->add_option("--out", a->out, "output .npz")->required();
    cmd->add_flag("--compress", a->compress, "deflate the arrays (numpy.savez_compressed)");
    add_encode_options(cmd, a->encode);
    cmd->callback([a] { throw CommandExit{run_fid_stats(*a)}; });
  }
  {
    auto* group = app.add_subcommand("fid-features", "the built-in FID feature network for small datasets");
    group->require_subcommand(1);
    auto a = std::make_shared<FeaturesTrainArgs>();
    auto* cmd = group->add_subcommand("train", "train it on a config's dataset (default: the built-in "
                                               "quickstart's Fashion-MNIST) and save it as TorchScript");
    cmd->add_option("config", a->positional,
                    "CONFIG.yaml then key.path=value overrides (no CONFIG: the built-in quickstart)");
    cmd->add_option("--out", a->out, "output TorchScript file (.pt)")->required();
    cmd->add_option("--steps", a->train.steps, "training steps")->check(CLI::Range(1, 10000000));
    cmd->add_option("--batch-size", a->train.batch_size, "images per step")->check(CLI::Range(1, 100000));
    cmd->add_option("--lr", a->train.lr, "Adam learning rate (cosine decay to 0)")->check(CLI::PositiveNumber);
    cmd->add_option("--width", a->net.width, "channels of the first conv layer")->check(CLI::Range(1, 1024));
    cmd->add_option("--feature-dims", a->net.feature_dims, "feature dimension")->check(CLI::Range(2, 8192));
    cmd->add_option("--eval-samples", a->train.eval_samples,
                    "held-out images for the accuracy (0: the whole eval split)")->check(CLI::NonNegativeNumber);
    cmd->add_option("--threads", a->threads, "intra-op threads (default train.threads)")->check(CLI::Range(0, 1024));
    cmd->callback([a] { throw CommandExit{run_features_train(*a)}; });
  }
}

}  // namespace vdm
