// `vdm eval RUN_OR_CHECKPOINT [--bpd] [--fid] [--num-samples N] [--features PATH] [--raw]
// [--conditional] [--bpd-estimator E] [--bpd-draws K]`:
// evaluates a trained model as the end of `vdm train` does (EMA weights by default), on every
// rank under mpirun/srun or alone, and appends the record to RUN/eval.jsonl (and RUN/tb/).
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <filesystem>

#include "distributed/process_context.h"
#include "launch/commands.h"
#include "launch/config.h"
#include "launch/trained_model.h"
#include "training/evaluator.h"
#include "training/metrics_log.h"
#include "training/run_directory.h"
#include "training/tensorboard_log.h"

namespace vdm {
namespace {

namespace fs = std::filesystem;

struct EvalArgs {
  std::string source, features;
  std::string bpd_estimator;
  bool bpd = false, fid = false, raw = false, conditional = false;
  int64_t num_samples = 0, threads = 0, bpd_draws = 0, batch_size = 0;
};

// The run directory a checkpoint belongs to: RUN/checkpoints/step_N -> RUN.
std::string run_dir_of(const std::string& source) {
  const fs::path p = fs::absolute(source).lexically_normal();
  if (fs::exists(p / "manifest.json")) return p.parent_path().parent_path().string();
  return p.string();
}

int run_eval(const EvalArgs& a) {
  if (!fs::exists(a.source))
    throw UsageError("vdm eval: " + a.source + " does not exist; give a run directory or a checkpoint folder");
  ProcessContext context(nullptr, nullptr, {});
  configure_rank_logging(context.rank(), context.world());
  return run_or_abort([&] {
    const TrainedModel tm = load_trained_model(a.source, !a.raw);
    const RunConfig& cfg = tm.config;
    const std::string run_dir = run_dir_of(a.source);
    torch::set_num_threads(int(a.threads > 0 ? a.threads : cfg.train.threads));
    EvaluatorOptions eo = cfg.train.eval;
    eo.run_dir = run_dir;
    if (a.bpd || a.fid) {  // only what was asked for
      eo.bpd = a.bpd;
      eo.fid = a.fid;
      eo.sample_count = 0;
    }
    if (!a.features.empty()) eo.fid_features = a.features;
    if (!a.bpd_estimator.empty()) eo.bpd_options.estimator = a.bpd_estimator;
    if (a.bpd_draws > 0) eo.bpd_options.draws = a.bpd_draws;
    if (a.batch_size > 0) eo.batch_size = eo.bpd_options.batch_size = a.batch_size;
    if (a.conditional) {
      if (eo.num_classes == 0)
        throw UsageError("vdm eval --conditional: the model is unconditional; its bits/dim is -log p(x) already");
      eo.bpd_options.conditional = true;
    }
    if (a.num_samples > 0) eo.fid_samples = a.num_samples;
    if (eo.fid && eo.fid_features.empty())
      throw UsageError("vdm eval --fid: the run's config has no eval.fid.features; give --features PATH "
                        "(a TorchScript feature net) or --features builtin");
    const auto comm = make_host_communicator();
    if (context.is_root())
      spdlog::info("evaluating {} (step {}, {} weights) on {} rank(s)", tm.checkpoint, tm.step,
                   tm.ema ? "EMA" : "raw", context.world());
    auto record = evaluate_model(eo, {context.rank(), context.world(), c10::Device(c10::kCPU), comm.get(), nullptr},
                                 tm.model, *tm.objective, tm.step);
    record["weights"] = tm.ema ? "ema" : "raw";
    record["source"] = "vdm eval";
    // keep_through_step = max: append, never drop what training wrote.
    MetricsLog log(RunDirectory(run_dir).eval_log(), context.is_root(), std::numeric_limits<int64_t>::max(),
                   std::make_shared<TensorBoardLog>(RunDirectory(run_dir).tensorboard(), context.is_root()), "eval");
    log.write(record);
    if (context.is_root()) std::printf("%s\n", record.dump().c_str());
    return 0;
  });
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  auto* cmd = app.add_subcommand("eval", "evaluate a trained model: sample grid, FID, test-set bits/dim (eval.jsonl)");
  cmd->add_option("source", a->source, "run directory (its newest intact checkpoint) or a checkpoint folder")
      ->required();
  cmd->add_flag("--bpd", a->bpd, "bits/dim on the held-out split (with --fid: only these two)");
  cmd->add_flag("--fid", a->fid, "FID of generated samples against the held-out split");
  cmd->add_option("--num-samples", a->num_samples, "generated images for the FID (default eval.fid.num_samples)");
  cmd->add_option("--features", a->features, "FID feature net: a TorchScript file, or builtin");
  cmd->add_flag("--raw", a->raw, "the raw weights instead of the EMA");
  cmd->add_flag("--conditional", a->conditional,
                "class-conditional models: -log p(x|y) with the labels (default: -log p(x), null label)");
  cmd->add_option("--bpd-estimator", a->bpd_estimator, "importance (default) or schedule (VDM's uniform t)")
      ->check(CLI::IsMember(bpd_estimator_names()));
  cmd->add_option("--bpd-draws", a->bpd_draws, "noise levels per image (default eval.bpd_draws)")
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--threads", a->threads, "intra-op threads (default train.threads)");
  cmd->add_option("--batch-size", a->batch_size, "images per forward pass on each rank (default eval.batch_size)")
      ->check(CLI::Range(1, 1 << 20));
  cmd->callback([a] { throw CommandExit{run_eval(*a)}; });
}

}  // namespace vdm
