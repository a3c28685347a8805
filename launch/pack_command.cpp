// `vdm pack SOURCE --resolution R --out DIR [--format imagefolder|idx] [--split S]`: packs each
// split of a dataset (or the ones named) into memory-mappable shards in DIR/<split>, with a
// progress line (live on a terminal, periodic in a log) and a summary line per split.
// Re-running the same command finishes an interrupted pack.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "data/packer.h"
#include "launch/commands.h"
#include "launch/config.h"
#include "training/elapsed_time.h"
#include "training/progress_line.h"

namespace vdm {
namespace {

struct PackArgs {
  std::string source, out, format, as_split, filter = "bicubic", on_error = "skip";
  std::vector<std::string> splits;
  int64_t resolution = 0, channels = 0, threads = 2, shard_size = 10000;
};

std::string guess_format(const std::string& source) {
  namespace fs = std::filesystem;
  for (const char* f : {"train-images-idx3-ubyte", "train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte",
                        "t10k-images-idx3-ubyte.gz"})
    if (fs::exists(fs::path(source) / f)) return "idx";
  return "imagefolder";
}

void run_pack(const PackArgs& a) {
  if (!std::filesystem::exists(a.source))
    throw UsageError("vdm pack: source " + a.source + " does not exist; give an image folder "
                      "(root/<class>/<images>) or a folder of idx files");
  PackOptions o;
  o.source.format = a.format.empty() ? guess_format(a.source) : a.format;
  o.source.path = a.source;
  o.source.resolution = a.resolution;
  o.splits = a.splits;
  o.as_split = a.as_split;
  o.source.channels = a.channels;
  o.source.on_error = a.on_error;
  o.out = a.out;
  o.threads = a.threads;
  o.shard_size = a.shard_size;
  o.filter = a.filter == "lanczos" ? ResizeFilter::Lanczos : ResizeFilter::Bicubic;

  // A split the source lacks is a mistake on the command line: exit 2, as for a missing source.
  try {
    resolve_pack_splits(o);
  } catch (const std::runtime_error& e) {
    throw UsageError(std::string("vdm pack: ") + e.what());
  }

  ProgressLine line(true, 10.0);
  auto report = [&](const PackProgress& p) {
    const double rate = p.seconds > 0 ? p.done / p.seconds : 0;
    const double eta = rate > 0 ? (p.total - p.done) / rate : 0;
    char text[200];
    std::snprintf(text, sizeof text, "pack: %lld/%lld images (%lld skipped), %.0f img/s, ETA %s, split %s",
                  static_cast<long long>(p.done), static_cast<long long>(p.total), static_cast<long long>(p.skipped),
                  rate, clock_text(eta).c_str(), p.split.c_str());
    line.update(text, p.done == p.total);
  };
  auto summary = [&](const SplitPackSummary& d) {
    const PackSummary& s = d.summary;
    line.break_line();
    std::printf("split %s: packed %lld images (%lld skipped) into %lld shards (%lld already complete), "
                "%.1f MB, in %.1f s -> %s\n",
                d.split.c_str(), static_cast<long long>(s.images), static_cast<long long>(s.skipped),
                static_cast<long long>(s.shards), static_cast<long long>(s.reused_shards),
                double(s.bytes) / 1e6, s.seconds, d.dir.c_str());
    std::fflush(stdout);
  };
  pack_splits(o, report, summary);
}

}  // namespace

void add_pack_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("pack", "Convert an image folder or idx dataset into packed shards");
  auto a = std::make_shared<PackArgs>();
  cmd->add_option("source", a->source, "image folder (root/<class>/<images>) or idx folder")->required();
  cmd->add_option("--resolution", a->resolution, "output size R (R x R)")->required()->check(CLI::Range(1, 1024));
  cmd->add_option("--out", a->out, "output folder (split S in DIR/S)")->required();
  cmd->add_option("--format", a->format, "source format (default: detected)")
      ->check(CLI::IsMember({"imagefolder", "idx"}));
  cmd->add_option("--split", a->splits,
                  "the split(s) to pack, repeatable or comma-separated (default: every split of SOURCE: "
                  "idx train, test; imagefolder SOURCE/{train,val,valid,validation,test}, or train for "
                  "a plain SOURCE/<class> layout)")
      ->delimiter(',')
      ->allow_extra_args(false);  // `--split val SOURCE` leaves SOURCE to the positional
  cmd->add_option("--as-split", a->as_split,
                  "pack the one split under this name (DIR/<name>), e.g. a held-out folder kept apart: "
                  "vdm pack /data/val --as-split val --out DIR");
  cmd->add_option("--channels", a->channels, "1 or 3 (default: the source's)")->check(CLI::IsMember({0, 1, 3}));
  cmd->add_option("--threads", a->threads, "decode threads")->check(CLI::Range(1, 256));
  cmd->add_option("--shard-size", a->shard_size, "images per shard")->check(CLI::Range(1, 100000000));
  cmd->add_option("--filter", a->filter, "resize filter")->check(CLI::IsMember({"bicubic", "lanczos"}));
  cmd->add_option("--on-error", a->on_error, "unreadable files: skip (count and warn) or fail")
      ->check(CLI::IsMember({"skip", "fail"}));
  cmd->callback([a] { run_pack(*a); });
}

}  // namespace vdm
