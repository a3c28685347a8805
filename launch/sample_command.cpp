// `vdm sample RUN_OR_CHECKPOINT --num N [--sampler ancestral|ddim|heun] [--steps K] [--ema]
// --out FILE.png|DIR`: draws N images from a trained model, alone or on every MPI rank, and
// writes one grid PNG or one PNG per sample. Images depend on (--seed, sample index) only.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <memory>

#include "data/atomic_file.h"
#include "data/image_codec.h"
#include "distributed/process_context.h"
#include "evaluation/image_grid.h"
#include "evaluation/sample_generator.h"
#include "launch/commands.h"
#include "launch/config.h"
#include "launch/trained_model.h"
#include "training/elapsed_time.h"
#include "training/progress_line.h"

namespace vdm {
namespace {

namespace fs = std::filesystem;

struct SampleArgs {
  std::string source, out, sampler = "ancestral", device;
  int64_t num = 0, steps = 0, batch = 64, threads = 1, class_label = -1, columns = 0;
  double eta = 1.0, guidance = 0.0, churn = 0.0, s_tmin = 0.0,
         s_tmax = std::numeric_limits<double>::infinity(), s_noise = 1.0;
  uint64_t seed = 0;
  bool ema = false;
};

bool is_png_path(const std::string& path) {
  std::string ext = fs::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
  return ext == ".png";
}

// Rank r makes the batches r, r + world, ... of --batch consecutive sample indices, so every
// batch holds the same indices whatever the number of ranks, and the network sees the same
// inputs: the images are then bitwise those of a single process (same --threads).
std::vector<int64_t> indices_of_rank(int64_t num, int64_t batch, int rank, int world) {
  std::vector<int64_t> out;
  for (int64_t start = int64_t(rank) * batch; start < num; start += int64_t(world) * batch)
    for (int64_t i = start; i < std::min(num, start + batch); ++i) out.push_back(i);
  return out;
}

// Rank 0's progress: a rewritten line on a terminal, else a log line at most every 30 s (so
// short runs stay quiet and batch logs stay short).
std::function<void(int64_t, int64_t)> progress_printer(bool root) {
  if (!root) return {};
  const auto start = SteadyClock::now();
  auto line = std::make_shared<ProgressLine>(root, 30.0);
  return [=](int64_t done, int64_t total) {
    const double eta = seconds_between(start, SteadyClock::now()) / double(done) * double(total - done);
    char text[160];
    std::snprintf(text, sizeof text, "sampling: %lld/%lld network evaluations on rank 0 (%.0f%%), ETA %s",
                  static_cast<long long>(done), static_cast<long long>(total), 100.0 * double(done) / double(total),
                  clock_text(eta).c_str());
    line->update(text, done == total);
  };
}

void write_outputs(const SampleArgs& a, const torch::Tensor& images) {
  const int64_t C = images.size(1), H = images.size(2);
  if (is_png_path(a.out)) {
    if (fs::path(a.out).has_parent_path()) fs::create_directories(fs::path(a.out).parent_path());
    // Small images are enlarged (nearest neighbour) so the grid is easy to look at, as in training.
    const int64_t zoom = std::max<int64_t>(1, 64 / H);
    write_image_grid(a.out, images.repeat_interleave(zoom, 2).repeat_interleave(zoom, 3), a.columns);
    spdlog::info("wrote a grid of {} samples ({}x{}x{}) to {}", images.size(0), C, H, images.size(3), a.out);
    return;
  }
  fs::create_directories(a.out);
  for (int64_t n = 0; n < images.size(0); ++n) {
    char name[32];
    std::snprintf(name, sizeof name, "sample_%06lld.png", static_cast<long long>(n));
    const auto png = encode_png(make_grid(images.narrow(0, n, 1), 1, 0));
    write_file_atomically((fs::path(a.out) / name).string(), png.data(), png.size());
  }
  spdlog::info("wrote {} samples ({}x{}x{}) to {}/sample_*.png", images.size(0), C, H, images.size(3), a.out);
}

int run_sample(const SampleArgs& a, bool steps_given, bool device_given) {
  // Everything that can be wrong with the input is found before MPI starts, so it ends every
  // rank alike with one message.
  if (a.num < 1) throw CLI::ValidationError("--num", "must be at least 1");
  if (a.batch < 1) throw CLI::ValidationError("--batch", "must be at least 1");
  if (a.sampler == "ddim" && !(a.eta >= 0 && a.eta <= 1)) throw CLI::ValidationError("--eta", "must lie in [0, 1]");
  if (!(a.guidance >= 0)) throw CLI::ValidationError("--guidance", "must be >= 0");
  const TrainedModel tm = load_trained_model(a.source, a.ema);
  const RunConfig& cfg = tm.config;
  const int64_t num_classes = vdm::num_classes(cfg.train.model);
  if (a.class_label >= 0 && num_classes == 0)
    throw UsageError("--class " + std::to_string(a.class_label) + ": the model in " + tm.checkpoint +
                      " is unconditional (model.num_classes = 0)");
  if (a.class_label >= num_classes && num_classes > 0)
    throw UsageError("--class " + std::to_string(a.class_label) + ": the model knows classes 0.." +
                      std::to_string(num_classes - 1));
  if (a.guidance > 0 && num_classes == 0)
    throw UsageError("--guidance needs a class-conditional model; the model in " + tm.checkpoint +
                      " is unconditional (model.num_classes = 0)");

  SamplingOptions so;
  so.sampler = a.sampler;
  // Without --steps: the run's own eval.steps for its eval.sampler, else each sampler's usual count.
  so.steps = steps_given ? a.steps
             : a.sampler == cfg.train.eval.sampler.sampler ? cfg.train.eval.sampler.steps
             : a.sampler == "heun"           ? 18
                                             : 256;
  if (so.sampler == "heun" && so.steps < 2)
    throw CLI::ValidationError("--steps", "heun needs at least 2 noise levels");
  so.eta = a.eta;
  so.guidance = a.guidance;
  so.null_label = num_classes;
  so.s_churn = a.churn;
  so.s_tmin = a.s_tmin;
  so.s_tmax = a.s_tmax;
  so.s_noise = a.s_noise;
  so.seed = a.seed;
  so.batch_size = a.batch;

  ProcessContextOptions po = cfg.process;
  if (device_given) po.device = a.device;
  ProcessContext context(nullptr, nullptr, po);
  configure_rank_logging(context.rank(), context.world());
  return run_or_abort([&] {
    torch::set_num_threads(int(std::max<int64_t>(1, a.threads)));
    torch::NoGradGuard no_grad;
    const auto device = context.device();
    tm.model->to(device);
    tm.objective->to(device);
    const int rank = context.rank(), world = context.world();
    const bool root = context.is_root();
    if (root)
      spdlog::info("{} samples from {} (step {}, {} weights), {} sampler, {} steps, seed {}, {} rank(s), device {}",
                   a.num, tm.checkpoint, tm.step, a.ema ? "EMA" : "raw", so.sampler, so.steps, so.seed, world,
                   device.str());
    const auto indices = indices_of_rank(a.num, a.batch, rank, world);
    torch::Tensor labels;
    if (num_classes > 0) {
      labels = torch::tensor(indices, torch::kInt64);
      labels = a.class_label >= 0 ? torch::full_like(labels, a.class_label) : labels.remainder(num_classes);
    }
    so.progress = progress_printer(root);
    const int64_t channels = cfg.train.data.channels, res = cfg.train.data.resolution;
    DenoiserNet model = tm.model;
    Denoiser denoiser = [model](const torch::Tensor& in, const torch::Tensor& c, const torch::Tensor& y) {
      return model->forward(in, c, y);
    };
    const auto t0 = SteadyClock::now();
    const auto mine = generate_samples(denoiser, tm.objective->schedule(), *tm.objective->parameterisation(),
                                       {channels, res, res}, indices, labels, so,
                                       torch::TensorOptions().device(device).dtype(torch::kFloat32));
    // Ranks hold different counts: pad to the largest share for the all-gather, and let rank 0
    // put every rank's images back at their indices.
    const int64_t most = int64_t(indices_of_rank(a.num, a.batch, 0, world).size());
    auto padded = torch::zeros({most, channels, res, res}, torch::kUInt8);
    padded.narrow(0, 0, mine.size(0)).copy_(mine);
    const auto all = world > 1 ? make_host_communicator()->all_gather(padded) : padded.unsqueeze(0);
    if (root) {
      auto images = torch::empty({a.num, channels, res, res}, torch::kUInt8);
      for (int r = 0; r < world; ++r) {
        const auto idx = indices_of_rank(a.num, a.batch, r, world);
        for (size_t k = 0; k < idx.size(); ++k) images[idx[k]].copy_(all[r][int64_t(k)]);
      }
      spdlog::info("sampled {} images in {:.1f} s", a.num, seconds_between(t0, SteadyClock::now()));
      write_outputs(a, images);
    }
    return 0;
  });
}

}  // namespace

void add_sample_command(CLI::App& app) {
  auto a = std::make_shared<SampleArgs>();
  auto* cmd = app.add_subcommand("sample", "draw images from a trained model (alone, or on every rank under mpirun/srun)");
  cmd->add_option("source", a->source, "run directory (its newest intact checkpoint) or a checkpoint folder")->required();
  cmd->add_option("--num", a->num, "number of images")->required();
  cmd->add_option("--out", a->out, "FILE.png: one grid; any other path: a folder of sample_000000.png, ...")->required();
  cmd->add_option("--sampler", a->sampler, "ancestral (VDM), ddim, or heun (EDM)")
      ->check(CLI::IsMember({"ancestral", "ddim", "heun"}));
  auto* steps = cmd->add_option("--steps", a->steps,
                                "ancestral/ddim: T steps; heun: noise levels (2K - 1 network calls). "
                                "Default: the run's eval.steps for its eval.sampler, else 256 (heun: 18)")
                    ->check(CLI::PositiveNumber);
  cmd->add_option("--eta", a->eta, "ddim: 0 deterministic ... 1 ancestral (default 1)");
  cmd->add_option("--guidance", a->guidance, "classifier-free guidance weight w (0: off; class-conditional models)");
  cmd->add_option("--class", a->class_label, "class of every sample (default: sample i gets class i mod classes)");
  cmd->add_option("--seed", a->seed, "seed: sample i's noise comes from (seed, i) alone");
  cmd->add_flag("--ema", a->ema, "use the EMA weights (ema.pt) instead of the raw ones");
  cmd->add_option("--batch", a->batch, "images per network batch (default 64)");
  cmd->add_option("--threads", a->threads, "torch intra-op threads per rank (default 1)");
  auto* device = cmd->add_option("--device", a->device, "cpu or cuda (default: the run's train.device)")
                     ->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->add_option("--columns", a->columns, "grid columns (default: about sqrt(num))");
  cmd->add_option("--churn", a->churn, "heun: EDM's S_churn (0: deterministic)");
  cmd->add_option("--s-tmin", a->s_tmin, "heun: churn only where sigma >= this");
  cmd->add_option("--s-tmax", a->s_tmax, "heun: churn only where sigma <= this");
  cmd->add_option("--s-noise", a->s_noise, "heun: EDM's S_noise");
  cmd->callback([a, steps, device] { throw CommandExit{run_sample(*a, steps->count() > 0, device->count() > 0)}; });
}

}  // namespace vdm
