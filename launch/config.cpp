// YAML -> RunConfig. Overrides are spliced into the parsed tree before anything is read, so a
// command-line value is validated exactly like one from the file; the tree remembers which keys
// the overrides wrote, so each error names either file:line or the override that caused it.
#include "launch/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <utility>

namespace vdm {
namespace {

using Strings = std::vector<std::string>;

const Strings kWeightings = {"elbo",  "sigmoid", "edm", "edm_monotonic", "iddpm",
                             "v_mse", "min_snr", "p2",  "flow_matching"};

std::string join(const Strings& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

std::string source_label(const std::string& source) {
  return source.empty() ? "<built-in config>" : source;
}

// Levenshtein with adjacent transpositions counted as one edit: swapped letters ("nmae") are
// the commonest typo and should rank as close as a single wrong letter.
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      d[i][j] = std::min(
          {d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.size()][b.size()];
}

// Suggests a choice within two edits (never rewriting the whole word), else one that shares a
// prefix of three or more letters ("batch" -> "batch_size").
std::string did_you_mean(const std::string& word, const Strings& choices) {
  std::string best;
  size_t best_distance = 3;
  for (const auto& choice : choices) {
    const size_t d = edit_distance(word, choice);
    if (d < best_distance && d < word.size()) {
      best = choice;
      best_distance = d;
    }
  }
  for (const auto& choice : choices) {
    if (!best.empty()) break;
    const auto& shorter = word.size() < choice.size() ? word : choice;
    const auto& longer = word.size() < choice.size() ? choice : word;
    if (shorter.size() >= 3 && longer.compare(0, shorter.size(), shorter) == 0) best = choice;
  }
  return best.empty() ? "" : "; did you mean '" + best + "'?";
}

std::string describe(const YAML::Node& node) {
  if (node.IsScalar()) return "'" + node.Scalar() + "'";
  if (node.IsSequence()) return "a list";
  if (node.IsMap()) return "a map";
  return "nothing (null)";
}

// Shortest text that reads back as the same double, so RUN/config.yaml shows lr: 0.0002;
// fixed notation unless that gets long (1e-12), and always recognisably a float.
std::string format_number(double v) {
  char buf[400];
  auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed);
  std::string s(buf, r.ptr);
  if (s.size() > 12) {
    r = std::to_chars(buf, buf + sizeof buf, v);
    s.assign(buf, r.ptr);
  }
  if (s.find_first_not_of("-0123456789") == std::string::npos) s += ".0";
  return s;
}

// from_chars rather than strtod: a locale set elsewhere in the process must not change how
// "0.5" reads.
bool parse_number(const std::string& text, double& out) {
  const char* first = text.c_str() + (text.size() > 1 && text[0] == '+' ? 1 : 0);
  const char* last = text.c_str() + text.size();
  double v = 0;
  const auto r = std::from_chars(first, last, v);
  if (r.ec != std::errc() || r.ptr != last || !std::isfinite(v)) return false;
  out = v;
  return true;
}

// Accepts 1e6 as well as 1000000: step counts are often written that way.
bool parse_integer(const std::string& text, int64_t& out) {
  const char* first = text.c_str() + (text.size() > 1 && text[0] == '+' ? 1 : 0);
  const char* last = text.c_str() + text.size();
  int64_t v = 0;
  const auto r = std::from_chars(first, last, v);
  if (r.ec == std::errc() && r.ptr == last) {
    out = v;
    return true;
  }
  double d = 0;
  if (!parse_number(text, d) || d != std::floor(d) || std::fabs(d) > 9007199254740992.0)
    return false;
  out = static_cast<int64_t>(d);
  return true;
}

// Sections that may be written as one scalar: `weighting: sigmoid` is {name: sigmoid}.
const char* shorthand_key(const std::string& dotted) {
  if (dotted == "objective.weighting" || dotted == "objective.proposal") return "name";
  if (dotted == "eval.fid") return "enabled";
  return nullptr;
}

YAML::Node expand_shorthand(const YAML::Node& scalar, const char* key) {
  YAML::Node map(YAML::NodeType::Map);
  map[key] = scalar;  // shares the scalar, so its line in the file is kept
  return map;
}

// Where values came from. An override claims the dotted key it wrote and everything below
// it; any other value is located by its line in the file.
class Provenance {
 public:
  explicit Provenance(std::string source) : source_(std::move(source)) {}

  void claim(const std::string& key, const std::string& override_text) {
    claims_.emplace_back(key, override_text);
  }
  std::string where(const std::string& key, const YAML::Node& node) const {
    for (auto it = claims_.rbegin(); it != claims_.rend(); ++it)
      if (covers(it->first, key)) return "command-line override '" + it->second + "'";
    if (node.IsDefined() && node.Mark().line >= 0)
      return source_ + ":" + std::to_string(node.Mark().line + 1);
    return source_;
  }
  [[noreturn]] void fail(const std::string& key, const YAML::Node& node,
                         const std::string& what) const {
    throw ConfigError(where(key, node) + ": " + (key.empty() ? "top level" : key) + ": " + what);
  }
  void record(const std::string& key, const YAML::Node& node) { origins_[key] = where(key, node); }
  std::map<std::string, std::string> take_origins() { return std::move(origins_); }

 private:
  static bool covers(const std::string& claimed, const std::string& key) {
    if (key.compare(0, claimed.size(), claimed) != 0) return false;
    return key.size() == claimed.size() || key[claimed.size()] == '.' || key[claimed.size()] == '[';
  }

  std::string source_;
  std::vector<std::pair<std::string, std::string>> claims_;
  std::map<std::string, std::string> origins_;
};

// One YAML map being read into a struct. Each get() declares a valid key; finish() rejects
// the keys nobody asked for, so the list of valid keys lives in one place: the reader.
class Section {
 public:
  Section(Provenance& prov, const YAML::Node& node, std::string path)
      : prov_(prov), node_(node), path_(std::move(path)) {
    if (!node_.IsDefined() || node_.IsNull()) return;  // omitted or empty: all defaults
    if (!node_.IsMap()) prov_.fail(path_, node_, "expected a map of keys, got " + describe(node_));
    for (const auto& kv : node_) {
      if (!kv.first.IsScalar())
        prov_.fail(path_, kv.first, "keys must be plain names, got " + describe(kv.first));
      entries_.push_back({kv.first.Scalar(), kv.first, kv.second});
    }
  }

  bool has(const std::string& key) const { return find(key) != nullptr; }

  void get(const std::string& key, std::string& out) {
    const YAML::Node* v = take(key);
    if (!v || v->IsNull()) return;
    if (!v->IsScalar()) fail(key, "expected a string, got " + describe(*v));
    out = v->Scalar();
  }
  void get(const std::string& key, int64_t& out) {
    const YAML::Node* v = take(key);
    if (v && !(v->IsScalar() && parse_integer(v->Scalar(), out)))
      fail(key, "expected an integer, got " + describe(*v));
  }
  void get(const std::string& key, double& out) {
    const YAML::Node* v = take(key);
    if (v && !(v->IsScalar() && parse_number(v->Scalar(), out)))
      fail(key, "expected a number, got " + describe(*v));
  }
  void get(const std::string& key, bool& out) {
    const YAML::Node* v = take(key);
    if (v && !YAML::convert<bool>::decode(*v, out))
      fail(key, "expected true or false, got " + describe(*v));
  }
  void get(const std::string& key, Strings& out) {
    const YAML::Node* v = take(key);
    if (!v || v->IsNull()) return;
    if (!v->IsSequence()) fail(key, "expected a list of strings like [a, b], got " + describe(*v));
    out.clear();
    for (size_t i = 0; i < v->size(); ++i) {
      const YAML::Node item = (*v)[i];
      const std::string item_key = dotted(key) + "[" + std::to_string(i) + "]";
      if (!item.IsScalar()) prov_.fail(item_key, item, "expected a string, got " + describe(item));
      out.push_back(item.Scalar());
    }
  }
  void get(const std::string& key, std::map<std::string, std::string>& out) {
    const YAML::Node* v = take(key);
    if (!v || v->IsNull()) return;
    if (!v->IsMap()) fail(key, "expected a map like {NAME: value}, got " + describe(*v));
    out.clear();
    for (const auto& kv : *v) {
      const std::string name = kv.first.IsScalar() ? kv.first.Scalar() : "?";
      if (!kv.first.IsScalar() || !(kv.second.IsScalar() || kv.second.IsNull()))
        prov_.fail(dotted(key) + "." + name, kv.second,
                   "expected a string value, got " + describe(kv.second));
      out[name] = kv.second.IsNull() ? "" : kv.second.Scalar();
    }
  }
  // A string restricted to a fixed set of names.
  void choose(const std::string& key, std::string& out, const Strings& choices) {
    get(key, out);
    if (std::find(choices.begin(), choices.end(), out) == choices.end())
      fail(key, "unknown value '" + out + "'" + did_you_mean(out, choices) +
                    " (choices: " + join(choices) + ")");
  }
  Section section(const std::string& key) {
    const YAML::Node* v = take(key);
    const char* shorthand = shorthand_key(dotted(key));
    if (!v) return Section(prov_, YAML::Node(), dotted(key));
    if (shorthand && v->IsScalar())
      return Section(prov_, expand_shorthand(*v, shorthand), dotted(key));
    return Section(prov_, *v, dotted(key));
  }

  // A range or consistency check on a value already read; `fix` says what is allowed.
  void require(bool ok, const std::string& key, const std::string& fix) const {
    if (ok) return;
    const Entry* e = find(key);
    const bool show = e && e->value.IsScalar();
    prov_.fail(dotted(key), e ? e->value : node_,
               fix + (show ? ", got " + describe(e->value) : ""));
  }
  void finish() const {
    for (const auto& e : entries_)
      if (std::find(known_.begin(), known_.end(), e.key) == known_.end())
        prov_.fail(
            dotted(e.key), e.key_node,
            "unknown key" + did_you_mean(e.key, known_) + " (valid keys: " + join(known_) + ")");
  }

 private:
  struct Entry {
    std::string key;
    YAML::Node key_node, value;
  };

  std::string dotted(const std::string& key) const {
    return path_.empty() ? key : path_ + "." + key;
  }
  const Entry* find(const std::string& key) const {
    for (const auto& e : entries_)
      if (e.key == key) return &e;
    return nullptr;
  }
  const YAML::Node* take(const std::string& key) {
    known_.push_back(key);
    const Entry* e = find(key);
    if (e) prov_.record(dotted(key), e->value);
    return e ? &e->value : nullptr;
  }
  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    const Entry* e = find(key);
    prov_.fail(dotted(key), e ? e->value : node_, what);
  }

  Provenance& prov_;
  YAML::Node node_;
  std::string path_;
  std::vector<Entry> entries_;
  Strings known_;
};

std::string at_least(int64_t lo) { return "must be >= " + std::to_string(lo); }
const char* kPositive = "must be > 0";
const char* kUnitOpen = "must be in [0, 1)";

void read(Section s, DataConfig& d) {
  s.choose("format", d.format, {"idx", "imagefolder", "packed"});
  s.get("path", d.path);
  s.get("resolution", d.resolution);
  s.require(d.resolution >= 1 && d.resolution <= 1024, "resolution", "must be in 1..1024");
  s.get("split", d.split);
  s.require(!d.split.empty(), "split", "must name a split, e.g. train");
  s.get("eval_split", d.eval_split);
  s.require(!d.eval_split.empty(), "eval_split", "must name a split, e.g. test");
  s.get("flip", d.flip);
  s.get("workers", d.workers);
  s.require(d.workers >= 0, "workers", at_least(0));
  s.choose("on_error", d.on_error, {"skip", "fail"});
  s.finish();
}

void read(Section s, ModelConfig& m) {
  s.choose("preset", m.preset, {"tiny", "quickstart", "cifar10_vdm", "imagenet64_adm"});
  s.get("channels", m.channels);
  s.require(m.channels >= 0, "channels", "must be >= 0 (0: the preset's width)");
  if (s.has("dropout")) {
    s.get("dropout", m.dropout);
    s.require(m.dropout >= 0 && m.dropout < 1, "dropout", kUnitOpen);
  }
  s.get("num_classes", m.num_classes);
  s.require(m.num_classes >= 0, "num_classes", "must be >= 0 (0: unconditional)");
  s.finish();
}

void read(Section s, ScheduleOptions& o) {
  s.choose("name", o.name, {"linear", "cosine", "learned"});
  s.get("gamma_min", o.gamma_min);
  s.get("gamma_max", o.gamma_max);
  if (s.has("gamma_max"))
    s.require(o.gamma_min < o.gamma_max, "gamma_max",
              "must be greater than gamma_min (" + format_number(o.gamma_min) + ")");
  else
    s.require(o.gamma_min < o.gamma_max, "gamma_min",
              "must be less than gamma_max (" + format_number(o.gamma_max) + ")");
  s.get("shift", o.shift);
  s.get("hidden", o.hidden);
  s.require(o.hidden >= 1, "hidden", at_least(1));
  s.get("learn_endpoints", o.learn_endpoints);
  s.get("minimise_variance", o.minimise_variance);
  s.finish();
}

void read(Section s, WeightingOptions& w) {
  s.choose("name", w.name, kWeightings);
  s.get("bias", w.bias);
  s.get("k", w.k);
  s.require(w.k > 0, "k", kPositive);
  s.get("p2_k", w.p2_k);
  s.require(w.p2_k > 0, "p2_k", kPositive);
  s.get("gamma", w.gamma);
  s.require(w.gamma >= 0, "gamma", "must be >= 0");
  s.get("p_mean", w.p_mean);
  s.get("p_std", w.p_std);
  s.require(w.p_std > 0, "p_std", kPositive);
  s.get("sigma_data", w.sigma_data);
  s.require(w.sigma_data > 0, "sigma_data", kPositive);
  s.finish();
}

void read(Section s, ProposalOptions& p) {
  s.choose("name", p.name, {"schedule", "edm_lognormal", "adaptive"});
  s.choose("time_sampling", p.time_sampling, {"iid", "antithetic", "stratified"});
  s.get("p_mean", p.p_mean);
  s.get("p_std", p.p_std);
  s.require(p.p_std > 0, "p_std", kPositive);
  s.get("bins", p.bins);
  s.require(p.bins >= 1, "bins", at_least(1));
  s.get("lambda_min", p.lambda_min);
  s.get("lambda_max", p.lambda_max);
  s.require(p.lambda_min < p.lambda_max, s.has("lambda_max") ? "lambda_max" : "lambda_min",
            "must satisfy lambda_min < lambda_max");
  s.get("ema", p.ema);
  s.require(p.ema >= 0 && p.ema < 1, "ema", kUnitOpen);
  s.get("uniform_mix", p.uniform_mix);
  s.require(p.uniform_mix >= 0 && p.uniform_mix <= 1, "uniform_mix", "must be in [0, 1]");
  s.finish();
}

void read(Section s, ObjectiveOptions& o) {
  s.choose("name", o.name, {"vlb", "eps_mse", "weighted"});
  s.get("timesteps", o.timesteps);
  s.require(o.timesteps >= 0, "timesteps", "must be >= 0 (0: continuous time)");
  read(s.section("weighting"), o.weighting);
  read(s.section("proposal"), o.proposal);
  s.choose("parameterisation", o.parameterisation, {"eps", "x", "v", "F"});
  s.get("vocab_size", o.vocab_size);
  s.require(o.vocab_size >= 2, "vocab_size", at_least(2));
  s.finish();
}

void read(Section s, TrainConfig& t) {
  s.get("steps", t.steps);
  s.require(t.steps >= 1, "steps", at_least(1));
  s.get("batch_size", t.batch_size);
  s.require(t.batch_size >= 1, "batch_size", at_least(1));
  s.get("lr", t.lr);
  s.require(t.lr > 0, "lr", kPositive);
  s.get("warmup_steps", t.warmup_steps);
  s.require(t.warmup_steps >= 0, "warmup_steps", at_least(0));
  s.choose("lr_schedule", t.lr_schedule, {"constant", "linear", "cosine"});
  s.get("grad_clip", t.grad_clip);
  s.require(t.grad_clip >= 0, "grad_clip", "must be >= 0 (0: no clipping)");
  s.get("ema_decay", t.ema_decay);
  s.require(t.ema_decay >= 0 && t.ema_decay < 1, "ema_decay", kUnitOpen);
  s.get("grad_accum", t.grad_accum);
  s.require(t.grad_accum >= 1, "grad_accum", at_least(1));
  s.get("threads", t.threads);
  s.require(t.threads >= 1, "threads", at_least(1));
  s.choose("device", t.device, {"cpu", "cuda"});
  s.get("log_every", t.log_every);
  s.require(t.log_every >= 0, "log_every", "must be >= 0 (0: off)");
  s.get("weight_decay", t.weight_decay);
  s.require(t.weight_decay >= 0, "weight_decay", "must be >= 0");
  s.get("adam_beta1", t.adam_beta1);
  s.require(t.adam_beta1 >= 0 && t.adam_beta1 < 1, "adam_beta1", kUnitOpen);
  s.get("adam_beta2", t.adam_beta2);
  s.require(t.adam_beta2 >= 0 && t.adam_beta2 < 1, "adam_beta2", kUnitOpen);
  s.get("bf16", t.bf16);
  s.require(!t.bf16 || t.device == "cuda", "bf16", "bf16 autocast is for train.device=cuda; set train.bf16=false on CPU");
  s.get("max_nonfinite_steps", t.max_nonfinite_steps);
  s.require(t.max_nonfinite_steps >= 1, "max_nonfinite_steps", at_least(1));
  s.finish();
}

void read(Section s, CheckpointConfig& c) {
  s.get("every", c.every);
  s.require(c.every >= 0, "every", "must be >= 0 (0: off)");
  s.get("keep_last", c.keep_last);
  s.require(c.keep_last >= 1, "keep_last", at_least(1));
  s.get("keep_every", c.keep_every);
  s.require(c.keep_every >= 0, "keep_every", "must be >= 0 (0: off)");
  s.finish();
}

void read(Section s, EvalConfig& e) {
  s.get("every", e.every);
  s.require(e.every >= 0, "every", "must be >= 0 (0: off)");
  s.get("num_samples", e.num_samples);
  s.require(e.num_samples >= 0, "num_samples", "must be >= 0 (0: no sample grid)");
  s.choose("sampler", e.sampler, {"ancestral", "ddim", "heun"});
  s.get("steps", e.steps);
  s.require(e.steps >= 1, "steps", at_least(1));
  s.get("bpd", e.bpd);
  Section fid = s.section("fid");
  fid.get("enabled", e.fid);
  fid.get("features", e.fid_features);
  fid.require(!e.fid || !e.fid_features.empty(), fid.has("features") ? "features" : "enabled",
              "FID needs eval.fid.features (a TorchScript feature file, or builtin to train the "
              "small built-in classifier on the data); set it or set eval.fid.enabled=false");
  fid.get("num_samples", e.fid_samples);
  fid.require(e.fid_samples >= 2, "num_samples", at_least(2));
  fid.get("reference", e.fid_reference);
  fid.finish();
  s.get("batch_size", e.batch_size);
  s.require(e.batch_size >= 1, "batch_size", at_least(1));
  s.get("bpd_samples", e.bpd_samples);
  s.require(e.bpd_samples >= 0, "bpd_samples", "must be >= 0 (0: the whole split)");
  s.finish();
}

void read(Section s, DistributedConfig& d) {
  s.get("bucket_mb", d.bucket_mb);
  s.require(d.bucket_mb > 0, "bucket_mb", kPositive);
  s.get("first_bucket_mb", d.first_bucket_mb);
  s.require(d.first_bucket_mb > 0, "first_bucket_mb", kPositive);
  s.get("timeout_s", d.timeout_s);
  s.require(d.timeout_s > 0, "timeout_s", kPositive);
  s.finish();
}

void read(Section s, SlurmConfig& c) {
  s.get("nodes", c.nodes);
  s.require(c.nodes >= 1, "nodes", at_least(1));
  s.get("tasks_per_node", c.tasks_per_node);
  s.require(c.tasks_per_node >= 1, "tasks_per_node", at_least(1));
  s.get("gpus_per_node", c.gpus_per_node);
  s.require(c.gpus_per_node >= 0, "gpus_per_node", at_least(0));
  s.get("cpus_per_task", c.cpus_per_task);
  s.require(c.cpus_per_task >= 1, "cpus_per_task", at_least(1));
  s.get("time", c.time);
  static const std::regex slurm_time(R"((\d+-)?\d+(:\d+){0,2}|UNLIMITED|INFINITE)",
                                     std::regex::icase);
  s.require(std::regex_match(c.time, slurm_time), "time",
            "must be a Slurm time limit such as 01:00:00, 90 (minutes) or 2-00:00:00");
  s.get("partition", c.partition);
  s.get("account", c.account);
  s.get("qos", c.qos);
  s.get("signal_lead_s", c.signal_lead_s);
  s.require(c.signal_lead_s >= 0, "signal_lead_s", at_least(0));
  s.get("extra", c.extra);
  s.get("env", c.env);
  static const std::regex env_name("[A-Za-z_][A-Za-z0-9_]*");
  for (const auto& kv : c.env)
    s.require(std::regex_match(kv.first, env_name), "env",
              "'" + kv.first + "' is not a valid environment variable name");
  s.choose("launcher", c.launcher, {"srun", "mpirun"});
  s.get("vdm", c.vdm);
  s.get("template", c.template_path);
  s.finish();
}

RunConfig read_run(const YAML::Node& root, Provenance& prov) {
  RunConfig c;
  Section s(prov, root, "");
  s.get("name", c.name);
  s.require(!c.name.empty() && c.name.find('/') == std::string::npos, "name",
            "must be a non-empty name without '/' (it names the run directory)");
  int64_t seed = 0;
  s.get("seed", seed);
  s.require(seed >= 0, "seed", at_least(0));
  c.seed = static_cast<uint64_t>(seed);
  read(s.section("data"), c.data);
  read(s.section("model"), c.model);
  read(s.section("schedule"), c.schedule);
  read(s.section("objective"), c.objective);
  read(s.section("train"), c.train);
  read(s.section("checkpoint"), c.checkpoint);
  read(s.section("eval"), c.eval);
  read(s.section("distributed"), c.distributed);
  read(s.section("slurm"), c.slurm);
  s.finish();
  return c;
}

// Hydra's key.path=value: the value is YAML, so lists, maps and whole sections can be set.
void apply_override(YAML::Node& root, const std::string& text, Provenance& prov) {
  const std::string who = "command-line override '" + text + "'";
  const size_t eq = text.find('=');
  if (eq == std::string::npos)
    throw ConfigError(who + ": expected key.path=value, e.g. train.steps=100");
  const std::string key = text.substr(0, eq);
  Strings parts;
  std::stringstream split(key);
  for (std::string part; std::getline(split, part, '.');) parts.push_back(part);
  if (key.empty() || key.back() == '.' ||
      std::any_of(parts.begin(), parts.end(), [](const auto& p) { return p.empty(); }))
    throw ConfigError(who + ": '" + key + "' is not a key path; write e.g. train.steps=100");
  YAML::Node value;
  try {
    value = YAML::Load(text.substr(eq + 1));
  } catch (const YAML::Exception& e) {
    throw ConfigError(who + ": " + key + ": the value is not valid YAML (" + e.msg +
                      "); quote it, e.g. " + key + "='...'");
  }
  YAML::Node node = root;
  std::string path;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    path += (i ? "." : "") + parts[i];
    YAML::Node child = node[parts[i]];  // assigning to child rewrites the tree in place
    if (!child.IsDefined() || child.IsNull()) {
      child = YAML::Node(YAML::NodeType::Map);
      prov.claim(path, text);
    } else if (child.IsScalar() && shorthand_key(path)) {
      child = expand_shorthand(child, shorthand_key(path));
    } else if (!child.IsMap()) {
      throw ConfigError(who + ": " + path + " is a value, not a section, so it has no key '" +
                        parts[i + 1] + "'; did you mean " + path + "=" + text.substr(eq + 1) + "?");
    }
    node.reset(child);
  }
  node[parts.back()] = value;
  prov.claim(key, text);
}

// ---- RunConfig -> YAML ----------------------------------------------------------------------

// Quote strings that would otherwise read back as null, a bool or a number.
bool needs_quotes(const std::string& s) {
  static const std::regex special("~|null|true|false|yes|no|on|off|y|n", std::regex::icase);
  double unused;
  return s.empty() || std::regex_match(s, special) || parse_number(s, unused);
}

class Writer {
 public:
  Writer() { out_ << YAML::BeginMap; }
  void begin(const char* key) { out_ << YAML::Key << key << YAML::Value << YAML::BeginMap; }
  void end() { out_ << YAML::EndMap; }
  void put(const char* key, const std::string& v) {
    out_ << YAML::Key << key << YAML::Value;
    str(v);
  }
  void put(const char* key, int64_t v) { out_ << YAML::Key << key << YAML::Value << v; }
  void put(const char* key, uint64_t v) { out_ << YAML::Key << key << YAML::Value << v; }
  void put(const char* key, double v) {
    out_ << YAML::Key << key << YAML::Value << format_number(v);
  }
  void put(const char* key, bool v) { out_ << YAML::Key << key << YAML::Value << v; }
  void put(const char* key, const Strings& v) {
    out_ << YAML::Key << key << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (const auto& item : v) str(item);
    out_ << YAML::EndSeq;
  }
  void put(const char* key, const std::map<std::string, std::string>& v) {
    out_ << YAML::Key << key << YAML::Value;
    if (v.empty()) out_ << YAML::Flow;
    out_ << YAML::BeginMap;
    for (const auto& kv : v) {
      out_ << YAML::Key << kv.first << YAML::Value;
      str(kv.second);
    }
    out_ << YAML::EndMap;
  }
  std::string text() {
    out_ << YAML::EndMap;
    return std::string(out_.c_str()) + "\n";
  }

 private:
  void str(const std::string& v) {
    if (needs_quotes(v)) out_ << YAML::DoubleQuoted;
    out_ << v;
  }
  YAML::Emitter out_;
};

std::string emit(const RunConfig& c) {
  Writer w;
  w.put("name", c.name);
  w.put("seed", c.seed);
  w.begin("data");
  w.put("format", c.data.format);
  w.put("path", c.data.path);
  w.put("resolution", c.data.resolution);
  w.put("split", c.data.split);
  w.put("eval_split", c.data.eval_split);
  w.put("flip", c.data.flip);
  w.put("workers", c.data.workers);
  w.put("on_error", c.data.on_error);
  w.end();
  w.begin("model");
  w.put("preset", c.model.preset);
  w.put("channels", c.model.channels);
  if (c.model.dropout >= 0) w.put("dropout", c.model.dropout);
  w.put("num_classes", c.model.num_classes);
  w.end();
  w.begin("schedule");
  w.put("name", c.schedule.name);
  w.put("gamma_min", c.schedule.gamma_min);
  w.put("gamma_max", c.schedule.gamma_max);
  w.put("shift", c.schedule.shift);
  w.put("hidden", c.schedule.hidden);
  w.put("learn_endpoints", c.schedule.learn_endpoints);
  w.put("minimise_variance", c.schedule.minimise_variance);
  w.end();
  const ObjectiveOptions& o = c.objective;
  w.begin("objective");
  w.put("name", o.name);
  w.put("timesteps", o.timesteps);
  w.begin("weighting");
  w.put("name", o.weighting.name);
  w.put("bias", o.weighting.bias);
  w.put("k", o.weighting.k);
  w.put("p2_k", o.weighting.p2_k);
  w.put("gamma", o.weighting.gamma);
  w.put("p_mean", o.weighting.p_mean);
  w.put("p_std", o.weighting.p_std);
  w.put("sigma_data", o.weighting.sigma_data);
  w.end();
  w.begin("proposal");
  w.put("name", o.proposal.name);
  w.put("time_sampling", o.proposal.time_sampling);
  w.put("p_mean", o.proposal.p_mean);
  w.put("p_std", o.proposal.p_std);
  w.put("bins", o.proposal.bins);
  w.put("lambda_min", o.proposal.lambda_min);
  w.put("lambda_max", o.proposal.lambda_max);
  w.put("ema", o.proposal.ema);
  w.put("uniform_mix", o.proposal.uniform_mix);
  w.end();
  w.put("parameterisation", o.parameterisation);
  w.put("vocab_size", o.vocab_size);
  w.end();
  w.begin("train");
  w.put("steps", c.train.steps);
  w.put("batch_size", c.train.batch_size);
  w.put("lr", c.train.lr);
  w.put("warmup_steps", c.train.warmup_steps);
  w.put("lr_schedule", c.train.lr_schedule);
  w.put("grad_clip", c.train.grad_clip);
  w.put("ema_decay", c.train.ema_decay);
  w.put("grad_accum", c.train.grad_accum);
  w.put("threads", c.train.threads);
  w.put("device", c.train.device);
  w.put("log_every", c.train.log_every);
  w.put("weight_decay", c.train.weight_decay);
  w.put("adam_beta1", c.train.adam_beta1);
  w.put("adam_beta2", c.train.adam_beta2);
  w.put("bf16", c.train.bf16);
  w.put("max_nonfinite_steps", c.train.max_nonfinite_steps);
  w.end();
  w.begin("checkpoint");
  w.put("every", c.checkpoint.every);
  w.put("keep_last", c.checkpoint.keep_last);
  w.put("keep_every", c.checkpoint.keep_every);
  w.end();
  w.begin("eval");
  w.put("every", c.eval.every);
  w.put("num_samples", c.eval.num_samples);
  w.put("sampler", c.eval.sampler);
  w.put("steps", c.eval.steps);
  w.put("bpd", c.eval.bpd);
  w.begin("fid");
  w.put("enabled", c.eval.fid);
  w.put("features", c.eval.fid_features);
  w.put("num_samples", c.eval.fid_samples);
  w.put("reference", c.eval.fid_reference);
  w.end();
  w.put("batch_size", c.eval.batch_size);
  w.put("bpd_samples", c.eval.bpd_samples);
  w.end();
  w.begin("distributed");
  w.put("bucket_mb", c.distributed.bucket_mb);
  w.put("first_bucket_mb", c.distributed.first_bucket_mb);
  w.put("timeout_s", c.distributed.timeout_s);
  w.end();
  w.begin("slurm");
  w.put("nodes", c.slurm.nodes);
  w.put("tasks_per_node", c.slurm.tasks_per_node);
  w.put("gpus_per_node", c.slurm.gpus_per_node);
  w.put("cpus_per_task", c.slurm.cpus_per_task);
  w.put("time", c.slurm.time);
  w.put("partition", c.slurm.partition);
  w.put("account", c.slurm.account);
  w.put("qos", c.slurm.qos);
  w.put("signal_lead_s", c.slurm.signal_lead_s);
  w.put("extra", c.slurm.extra);
  w.put("env", c.slurm.env);
  w.put("launcher", c.slurm.launcher);
  w.put("vdm", c.slurm.vdm);
  w.put("template", c.slurm.template_path);
  w.end();
  return w.text();
}

std::string describe_cwd() {
  std::error_code ec;
  const auto cwd = std::filesystem::current_path(ec);
  return ec ? "the current directory" : cwd.string();
}

}  // namespace

RunConfig parse_config(const std::string& yaml_text, const std::string& source_name,
                       const std::vector<std::string>& overrides) {
  const std::string label = source_label(source_name);
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    const std::string line = e.mark.line >= 0 ? ":" + std::to_string(e.mark.line + 1) : "";
    const std::string column =
        e.mark.column >= 0 ? " at column " + std::to_string(e.mark.column + 1) : "";
    throw ConfigError(label + line + ": invalid YAML" + column + ": " + e.msg +
                      "; fix the syntax there (indentation, a ':' after each key, quotes "
                      "around values containing ': ' or '#')");
  }
  Provenance prov(label);
  if (!root.IsDefined() || root.IsNull()) root.reset(YAML::Node(YAML::NodeType::Map));
  if (!root.IsMap())
    prov.fail("", root,
              "expected a map of sections (name, seed, data, model, ...), got " + describe(root));
  for (const auto& text : overrides) apply_override(root, text, prov);

  RunConfig cfg = read_run(root, prov);
  cfg.source = source_name;
  cfg.origins = prov.take_origins();
  cfg.resolved_yaml = emit(cfg);
  return cfg;
}

RunConfig load_config(const std::string& path, const std::vector<std::string>& overrides) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const bool relative = fs::path(path).is_relative();
  if (!fs::exists(path, ec))
    throw ConfigError(path + ": config file not found" +
                      (relative ? " (relative to " + describe_cwd() + ")" : "") +
                      "; check the path, e.g. vdm train configs/quickstart.yaml");
  if (fs::is_directory(path, ec))
    throw ConfigError(path + ": is a directory; pass a YAML config file inside it");
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  if (!in) throw ConfigError(path + ": cannot read the config file; check its permissions");
  return parse_config(text.str(), path, overrides);
}

void check_paths(const RunConfig& cfg) {
  auto origin = [&](const std::string& key) {
    const auto it = cfg.origins.find(key);
    return it != cfg.origins.end() ? it->second : source_label(cfg.source);
  };
  auto require_exists = [&](const std::string& key, const std::string& path) {
    std::error_code ec;
    if (std::filesystem::exists(path, ec)) return;
    const bool relative = std::filesystem::path(path).is_relative();
    throw ConfigError(origin(key) + ": " + key + ": '" + path + "' does not exist" +
                      (relative ? " (relative to " + describe_cwd() + ")" : "") +
                      "; fix the path or override it with " + key + "=PATH");
  };
  if (cfg.data.path.empty())
    throw ConfigError(origin("data.path") +
                      ": data.path: not set; set it to the dataset location (for format idx: "
                      "the folder with the *-ubyte files, e.g. "
                      "/usr/share/datasets/fashion-mnist) or add data.path=DIR");
  require_exists("data.path", cfg.data.path);
  if (!cfg.eval.fid_features.empty() && cfg.eval.fid_features != "builtin")
    require_exists("eval.fid.features", cfg.eval.fid_features);
  if (!cfg.eval.fid_reference.empty()) require_exists("eval.fid.reference", cfg.eval.fid_reference);
}

}  // namespace vdm
