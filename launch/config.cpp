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
  // Where a key that was read came from (the file when it was left at its default).
  std::string origin(const std::string& key) const {
    const auto it = origins_.find(key);
    return it != origins_.end() ? it->second : source_;
  }
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

// Each config struct lists its keys once, in a visit(V&, Struct&) function below, which both
// directions run: Section reads and validates a YAML map into the struct, Writer emits the
// struct as YAML. Their common calls: field (a value), choose (one of fixed names), optional
// (a value left out of the YAML while it holds its "absent" default), section (a nested
// struct), nested (a sub-map read by a callback), check (a validation, with the key to blame
// and the fix; the writer skips it) and has (whether the map gave the key).
//
// Section: one YAML map being read into a struct. Each field() declares a valid key; finish()
// rejects the keys nobody asked for, so the list of valid keys lives in one place.
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

  void field(const std::string& key, std::string& out) {
    const YAML::Node* v = take(key);
    if (!v || v->IsNull()) return;
    if (!v->IsScalar()) fail(key, "expected a string, got " + describe(*v));
    out = v->Scalar();
  }
  void field(const std::string& key, int64_t& out) {
    const YAML::Node* v = take(key);
    if (v && !(v->IsScalar() && parse_integer(v->Scalar(), out)))
      fail(key, "expected an integer, got " + describe(*v));
  }
  void field(const std::string& key, double& out) {
    const YAML::Node* v = take(key);
    if (v && !(v->IsScalar() && parse_number(v->Scalar(), out)))
      fail(key, "expected a number, got " + describe(*v));
  }
  void field(const std::string& key, bool& out) {
    const YAML::Node* v = take(key);
    if (v && !YAML::convert<bool>::decode(*v, out))
      fail(key, "expected true or false, got " + describe(*v));
  }
  void field(const std::string& key, Strings& out) {
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
  void field(const std::string& key, std::map<std::string, std::string>& out) {
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
  void field(const std::string& key, std::vector<int64_t>& out) {
    const YAML::Node* v = take(key);
    if (!v || v->IsNull()) return;
    if (!v->IsSequence()) fail(key, "expected a list of integers like [1, 2, 2], got " + describe(*v));
    out.clear();
    for (size_t i = 0; i < v->size(); ++i) {
      const YAML::Node item = (*v)[i];
      int64_t x = 0;
      if (!(item.IsScalar() && parse_integer(item.Scalar(), x)))
        prov_.fail(dotted(key) + "[" + std::to_string(i) + "]", item, "expected an integer, got " + describe(item));
      out.push_back(x);
    }
  }
  // Reading (this) or writing (Writer): a visit that fills in defaults from a name it has just
  // read (model.preset) does so only while reading.
  static constexpr bool reading() { return true; }
  // A string restricted to a fixed set of names.
  void choose(const std::string& key, std::string& out, const Strings& choices) {
    field(key, out);
    if (std::find(choices.begin(), choices.end(), out) == choices.end())
      fail(key, "unknown value '" + out + "'" + did_you_mean(out, choices) +
                    " (choices: " + join(choices) + ")");
  }
  void optional(const std::string& key, double& out, double /*absent*/) { field(key, out); }
  template <class F>
  void nested(const std::string& key, F&& read_into) {
    Section sub = open(key);
    read_into(sub);
    sub.finish();
  }
  template <class T>
  void section(const std::string& key, T& out) {
    nested(key, [&](Section& sub) { visit(sub, out); });
  }

  // A range or consistency check on a value already read; `fix` says what is allowed.
  void check(bool ok, const std::string& key, const std::string& fix) const {
    if (ok) return;
    const Entry* e = find(key);
    const bool show = e && e->value.IsScalar();
    prov_.fail(dotted(key), e ? e->value : node_,
               fix + (show ? ", got " + describe(e->value) : ""));
  }
  // A rule across keys, blamed on `key` (dotted below this section, e.g. "proposal.name"),
  // wherever that key was given.
  void check_rule(bool ok, const std::string& key, const std::string& fix) const {
    if (ok) return;
    throw ConfigError(prov_.origin(dotted(key)) + ": " + dotted(key) + ": " + fix);
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

  Section open(const std::string& key) {
    const YAML::Node* v = take(key);
    const char* shorthand = shorthand_key(dotted(key));
    if (!v) return Section(prov_, YAML::Node(), dotted(key));
    if (shorthand && v->IsScalar())
      return Section(prov_, expand_shorthand(*v, shorthand), dotted(key));
    return Section(prov_, *v, dotted(key));
  }
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

// A module's own check failed with "<prefix><key>: <fix>" (models' and objectives' validate):
// blame <key> in this section, or fallback_key when the message names none.
template <class V>
void blame(V& v, const std::invalid_argument& e, const std::string& prefix, const std::string& fallback_key) {
  const std::string what = e.what();
  const size_t colon = what.find(": ");
  const bool named = what.rfind(prefix, 0) == 0 && colon != std::string::npos;
  v.check_rule(false, named ? what.substr(prefix.size(), colon - prefix.size()) : fallback_key,
               colon != std::string::npos ? what.substr(colon + 2) : what);
}

// data: the training split's DataOptions, the held-out split's name, and the loader's flips and
// workers. The other fields of the held-out DataOptions are derived (derive_fields).
template <class V>
void visit_data(V& v, TrainerOptions& t) {
  DataOptions& d = t.data;
  v.choose("format", d.format, data_format_names());
  v.field("path", d.path);
  v.field("resolution", d.resolution);
  v.check(d.resolution >= 1 && d.resolution <= 1024, "resolution", "must be in 1..1024");
  v.field("split", d.split);
  v.check(!d.split.empty(), "split", "must name a split, e.g. train");
  v.field("eval_split", t.eval_data.split);
  v.check(!t.eval_data.split.empty(), "eval_split", "must name a split, e.g. test");
  v.field("flip", t.loader.flip);
  v.field("workers", t.loader.workers);
  v.check(t.loader.workers >= 0, "workers", at_least(0));
  v.choose("on_error", d.on_error, on_error_names());
}

// The keys of each architecture's options. `channels` is the base width of either; 0 keeps the
// preset's (configs written before the architecture keys existed say 0; they left dropout out).
template <class V>
int64_t width_key(V& v, int64_t current) {
  int64_t width = current;
  v.field("channels", width);
  v.check(width >= 0, "channels", "must be >= 0 (0: the preset's width)");
  return width > 0 ? width : current;
}

template <class V>
double dropout_key(V& v, double current) {
  double dropout = current;
  v.field("dropout", dropout);
  v.check(dropout >= 0 && dropout < 1, "dropout", kUnitOpen);
  return dropout;
}

template <class V>
void visit_arch(V& v, UNetOptions& o) {
  o.base_channels(width_key(v, o.base_channels()));
  v.field("channel_mult", o.channel_mult());
  v.field("num_res_blocks", o.num_res_blocks());
  v.field("attention_resolutions", o.attention_resolutions());
  v.field("num_heads", o.num_heads());
  v.field("head_channels", o.head_channels());
  o.dropout(dropout_key(v, o.dropout()));
  v.field("scale_shift", o.scale_shift());
  v.field("skip_input", o.skip_input());
}

template <class V>
void visit_arch(V& v, VdmUNetOptions& o) {
  o.channels(width_key(v, o.channels()));
  v.field("num_blocks", o.num_blocks());
  v.field("num_heads", o.num_heads());
  o.dropout(dropout_key(v, o.dropout()));
  v.field("fourier_min", o.fourier_min());
  v.field("fourier_max", o.fourier_max());
  v.field("skip_input", o.skip_input());
}

// model: a preset gives every option a default and any key overrides it; `arch` picks the
// network, and only its keys are valid. The data's shape comes from data: (derive_fields).
template <class V>
void visit_model(V& v, ModelOptions& m, const DataOptions& data) {
  std::string preset = m.preset;
  v.choose("preset", preset, model_preset_names());
  if (V::reading()) m = model_preset(preset, format_channels(data.format), data.resolution);
  std::string arch = m.arch;
  v.choose("arch", arch, model_arch_names());
  m.arch = arch;
  int64_t classes = num_classes(m);
  v.field("num_classes", classes);
  v.check(classes >= 0, "num_classes", "must be >= 0 (0: unconditional)");
  set_data_shape(m, format_channels(data.format), data.resolution, classes);
  if (m.arch == "vdm")
    visit_arch(v, m.vdm);
  else
    visit_arch(v, m.adm);
  if (V::reading()) {
    try {
      validate(m);
    } catch (const std::invalid_argument& e) {
      blame(v, e, "model.", "arch");
    }
  }
}

template <class V>
void visit(V& v, ScheduleOptions& o) {
  v.choose("name", o.name, schedule_names());
  v.field("gamma_min", o.gamma_min);
  v.field("gamma_max", o.gamma_max);
  if (v.has("gamma_max"))
    v.check(o.gamma_min < o.gamma_max, "gamma_max",
              "must be greater than gamma_min (" + format_number(o.gamma_min) + ")");
  else
    v.check(o.gamma_min < o.gamma_max, "gamma_min",
              "must be less than gamma_max (" + format_number(o.gamma_max) + ")");
  v.field("shift", o.shift);
  v.field("hidden", o.hidden);
  v.check(o.hidden >= 1, "hidden", at_least(1));
  v.field("learn_endpoints", o.learn_endpoints);
  v.field("minimise_variance", o.minimise_variance);
}

template <class V>
void visit(V& v, WeightingOptions& w) {
  v.choose("name", w.name, weighting_names());
  v.field("bias", w.bias);
  v.field("k", w.k);
  v.check(w.k > 0, "k", kPositive);
  v.field("p2_k", w.p2_k);
  v.check(w.p2_k > 0, "p2_k", kPositive);
  v.field("gamma", w.gamma);
  v.check(w.gamma >= 0, "gamma", "must be >= 0");
  v.field("p_mean", w.p_mean);
  v.field("p_std", w.p_std);
  v.check(w.p_std > 0, "p_std", kPositive);
  v.field("sigma_data", w.sigma_data);
  v.check(w.sigma_data > 0, "sigma_data", kPositive);
}

template <class V>
void visit(V& v, ProposalOptions& p) {
  v.choose("name", p.name, proposal_names());
  v.choose("time_sampling", p.time_sampling, time_sampling_names());
  v.field("p_mean", p.p_mean);
  v.field("p_std", p.p_std);
  v.check(p.p_std > 0, "p_std", kPositive);
  v.field("bins", p.bins);
  v.check(p.bins >= 1, "bins", at_least(1));
  // Unset (NaN): the schedule's range, checked against it in check_proposal_range.
  v.optional("lambda_min", p.lambda_min, ProposalOptions{}.lambda_min);
  v.optional("lambda_max", p.lambda_max, ProposalOptions{}.lambda_max);
  v.check(std::isnan(p.lambda_min) || std::isnan(p.lambda_max) || p.lambda_min < p.lambda_max,
          v.has("lambda_max") ? "lambda_max" : "lambda_min", "must satisfy lambda_min < lambda_max");
  if (V::reading() && !v.has("adaptive_target") && p.lambda_min == -15.0 && p.lambda_max == 15.0) {
    // Configs written before the range defaulted to the schedule's (and before adaptive_target
    // existed) list the old default [-15, 15] for every proposal: a default, not a choice.
    p.lambda_min = p.lambda_max = ProposalOptions{}.lambda_min;
  }
  v.choose("adaptive_target", p.adaptive_target, adaptive_target_names());
  v.field("ema", p.ema);
  v.check(p.ema >= 0 && p.ema < 1, "ema", kUnitOpen);
  v.field("uniform_mix", p.uniform_mix);
  v.check(p.uniform_mix >= 0 && p.uniform_mix <= 1, "uniform_mix", "must be in [0, 1]");
}

template <class V>
void visit(V& v, ObjectiveOptions& o) {
  v.choose("name", o.name, objective_names());
  v.field("timesteps", o.timesteps);
  v.check(o.timesteps >= 0, "timesteps", "must be >= 0 (0: continuous time)");
  v.section("weighting", o.weighting);
  v.section("proposal", o.proposal);
  v.choose("parameterisation", o.parameterisation, parameterisation_names());
  if (V::reading()) {
    // Configs written before the key was removed say 256; pixels are 8-bit everywhere (encoding,
    // the decoder, the samplers), so no other value could be honoured.
    int64_t vocab_size = 256;
    v.field("vocab_size", vocab_size);
    v.check(vocab_size == 256, "vocab_size", "pixels are 8-bit everywhere, so only 256 is accepted; remove the key");
  }
  const OptionsProblem problem = check_options(o);  // the objectives' own rules
  v.check_rule(!problem, problem.key, problem.fix);
}

// train: the trainer's own options, its learning-rate schedule, EMA and loader batch size, and
// the device (the process context's).
template <class V>
void visit_train(V& v, TrainerOptions& t, ProcessContextOptions& process) {
  v.field("steps", t.steps);
  v.check(t.steps >= 1, "steps", at_least(1));
  v.field("batch_size", t.loader.batch_size);
  v.check(t.loader.batch_size >= 1, "batch_size", at_least(1));
  v.field("lr", t.lr.lr);
  v.check(t.lr.lr > 0, "lr", kPositive);
  v.field("warmup_steps", t.lr.warmup_steps);
  v.check(t.lr.warmup_steps >= 0, "warmup_steps", at_least(0));
  v.choose("lr_schedule", t.lr.shape, lr_schedule_names());
  v.field("grad_clip", t.grad_clip);
  v.check(t.grad_clip >= 0, "grad_clip", "must be >= 0 (0: no clipping)");
  v.field("ema_decay", t.ema.decay);
  v.check(t.ema.decay >= 0 && t.ema.decay < 1, "ema_decay", kUnitOpen);
  v.field("grad_accum", t.grad_accum);
  v.check(t.grad_accum >= 1, "grad_accum", at_least(1));
  v.field("threads", t.threads);
  v.check(t.threads >= 1, "threads", at_least(1));
  v.choose("device", process.device, {"cpu", "cuda"});
  v.field("log_every", t.log_every);
  v.check(t.log_every >= 0, "log_every", "must be >= 0 (0: every step)");
  v.field("weight_decay", t.weight_decay);
  v.check(t.weight_decay >= 0, "weight_decay", "must be >= 0");
  v.field("adam_beta1", t.adam_beta1);
  v.check(t.adam_beta1 >= 0 && t.adam_beta1 < 1, "adam_beta1", kUnitOpen);
  v.field("adam_beta2", t.adam_beta2);
  v.check(t.adam_beta2 >= 0 && t.adam_beta2 < 1, "adam_beta2", kUnitOpen);
  v.field("bf16", t.bf16);
  v.field("label_dropout", t.label_dropout);
  v.check(t.label_dropout >= 0 && t.label_dropout < 1, "label_dropout", kUnitOpen);
  v.field("channels_last", t.channels_last);
  v.field("fused_optimizer", t.fused_optimizer);
  v.field("peak_tflops", t.peak_tflops);
  v.check(t.peak_tflops >= 0, "peak_tflops", "must be >= 0 (0: measured on CPU, the device's on CUDA)");
  v.field("max_nonfinite_steps", t.max_nonfinite_steps);
  v.check(t.max_nonfinite_steps >= 1, "max_nonfinite_steps", at_least(1));
}

template <class V>
void visit_checkpoint(V& v, TrainerOptions& t) {
  v.field("every", t.checkpoint_every);
  v.check(t.checkpoint_every >= 0, "every", "must be >= 0 (0: off)");
  v.field("keep_last", t.keep_last);
  v.check(t.keep_last >= 1, "keep_last", at_least(1));
  v.field("keep_every", t.keep_every);
  v.check(t.keep_every >= 0, "keep_every", "must be >= 0 (0: off)");
  v.field("async", t.checkpoint_async);
}

// eval: the evaluator's options (its sampler's and bits/dim's), and how often the trainer runs it.
template <class V>
void visit_eval(V& v, TrainerOptions& t) {
  EvaluatorOptions& e = t.eval;
  v.field("every", t.eval_every);
  v.check(t.eval_every >= 0, "every", "must be >= 0 (0: no periodic evaluation)");
  v.field("final", t.eval_final);
  v.field("num_samples", e.sample_count);
  v.check(e.sample_count >= 0, "num_samples", "must be >= 0 (0: no sample grid)");
  v.choose("sampler", e.sampler.sampler, sampler_names());
  v.field("steps", e.sampler.steps);
  v.check(e.sampler.steps >= 1, "steps", at_least(1));
  v.field("bpd", e.bpd);
  v.nested("fid", [&](auto& fid) {
    fid.field("enabled", e.fid);
    fid.field("features", e.fid_features);
    fid.check(!e.fid || !e.fid_features.empty(), fid.has("features") ? "features" : "enabled",
              "FID needs eval.fid.features (a TorchScript feature file, or builtin to train the "
              "small built-in classifier on the data); set it or set eval.fid.enabled=false");
    fid.field("num_samples", e.fid_samples);
    fid.check(e.fid_samples >= 2, "num_samples", at_least(2));
    fid.field("reference", e.fid_reference);
  });
  v.field("batch_size", e.batch_size);
  v.check(e.batch_size >= 1, "batch_size", at_least(1));
  v.field("bpd_samples", e.bpd_options.max_samples);
  v.check(e.bpd_options.max_samples >= 0, "bpd_samples", "must be >= 0 (0: the whole split)");
  v.choose("bpd_estimator", e.bpd_options.estimator, bpd_estimator_names());
  v.field("bpd_draws", e.bpd_options.draws);
  v.check(e.bpd_options.draws >= 1, "bpd_draws", at_least(1));
  v.field("bpd_pilot", e.bpd_options.pilot);
  v.check(e.bpd_options.pilot >= 0, "bpd_pilot", at_least(0));
  v.field("bpd_conditional", e.bpd_options.conditional);
}

// distributed: the gradient reducer's options and the collective watchdog's timeout.
template <class V>
void visit_distributed(V& v, TrainerOptions& t) {
  v.field("bucket_mb", t.reducer.bucket_mb);
  v.check(t.reducer.bucket_mb > 0, "bucket_mb", kPositive);
  v.field("first_bucket_mb", t.reducer.first_bucket_mb);
  v.check(t.reducer.first_bucket_mb > 0, "first_bucket_mb", kPositive);
  v.field("timeout_s", t.timeout_s);
  v.check(t.timeout_s > 0, "timeout_s", kPositive);
  v.field("find_unused", t.reducer.find_unused);
}

template <class V>
void visit(V& v, SlurmConfig& c) {
  v.field("nodes", c.nodes);
  v.check(c.nodes >= 1, "nodes", at_least(1));
  v.field("tasks_per_node", c.tasks_per_node);
  v.check(c.tasks_per_node >= 1, "tasks_per_node", at_least(1));
  v.field("gpus_per_node", c.gpus_per_node);
  v.check(c.gpus_per_node >= 0, "gpus_per_node", at_least(0));
  v.field("cpus_per_task", c.cpus_per_task);
  v.check(c.cpus_per_task >= 1, "cpus_per_task", at_least(1));
  v.field("time", c.time);
  static const std::regex slurm_time(R"((\d+-)?\d+(:\d+){0,2}|UNLIMITED|INFINITE)",
                                     std::regex::icase);
  v.check(std::regex_match(c.time, slurm_time), "time",
            "must be a Slurm time limit such as 01:00:00, 90 (minutes) or 2-00:00:00");
  v.field("partition", c.partition);
  v.field("account", c.account);
  v.field("qos", c.qos);
  v.field("signal_lead_s", c.signal_lead_s);
  v.check(c.signal_lead_s >= 0, "signal_lead_s", at_least(0));
  v.field("extra", c.extra);
  v.field("env", c.env);
  static const std::regex env_name("[A-Za-z_][A-Za-z0-9_]*");
  for (const auto& kv : c.env)
    v.check(std::regex_match(kv.first, env_name), "env",
              "'" + kv.first + "' is not a valid environment variable name");
  v.choose("launcher", c.launcher, {"srun", "mpirun"});
  v.field("vdm", c.vdm);
  v.field("template", c.template_path);
  v.field("max_requeues", c.max_requeues);
  v.check(c.max_requeues >= 0, "max_requeues", "must be >= 0 (0: never requeue)");
}

// The lambda range of a proposal against the schedule's (both sections are read by now).
template <class V>
void check_proposal_range(V& v, const TrainerOptions& t) {
  if (t.objective.proposal.name == "schedule") return;
  try {
    proposal_range(t.objective.proposal, *make_schedule(t.schedule));
  } catch (const std::invalid_argument& e) {
    blame(v, e, "", "objective.proposal.lambda_min");
  }
}

template <class V>
void visit(V& v, RunConfig& c) {
  v.field("name", c.name);
  v.check(!c.name.empty() && c.name.find('/') == std::string::npos, "name",
          "must be a non-empty name without '/' (it names the run directory)");
  auto seed = static_cast<int64_t>(c.seed);
  v.field("seed", seed);
  v.check(seed >= 0, "seed", at_least(0));
  c.seed = static_cast<uint64_t>(seed);
  TrainerOptions& t = c.train;
  v.nested("data", [&](auto& d) { visit_data(d, t); });
  v.nested("model", [&](auto& m) { visit_model(m, t.model, t.data); });
  v.section("schedule", t.schedule);
  v.section("objective", t.objective);
  if (V::reading()) check_proposal_range(v, t);
  v.nested("train", [&](auto& s) { visit_train(s, t, c.process); });
  v.nested("checkpoint", [&](auto& s) { visit_checkpoint(s, t); });
  v.nested("eval", [&](auto& s) { visit_eval(s, t); });
  v.nested("distributed", [&](auto& s) { visit_distributed(s, t); });
  v.section("slurm", c.slurm);
}

// The fields that follow from others, filled in once after reading: the seed everywhere it is
// used, the held-out split's DataOptions (the training split's but for its name), the data's
// channel count, and the evaluator's copies of what it shares with training.
void derive_fields(RunConfig& c) {
  TrainerOptions& t = c.train;
  t.seed = c.seed;
  t.data.channels = format_channels(t.data.format);
  const std::string eval_split = t.eval_data.split;
  t.eval_data = t.data;
  t.eval_data.split = eval_split;
  t.loader.seed = c.seed;
  t.loader.on_error = t.data.on_error;
  EvaluatorOptions& e = t.eval;
  e.seed = c.seed;
  e.data = t.data;
  e.eval_data = t.eval_data;
  e.num_classes = num_classes(t.model);
  e.null_label_trained = t.label_dropout > 0;
  e.bpd_options.batch_size = e.batch_size;
  e.bpd_options.seed = c.seed;
}

RunConfig read_run(const YAML::Node& root, Provenance& prov) {
  RunConfig c;
  Section s(prov, root, "");
  visit(s, c);
  s.finish();
  derive_fields(c);
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

// Writer: the emitting visitor (see Section). The emitted text reads back to an equal config.
class Writer {
 public:
  Writer() { out_ << YAML::BeginMap; }
  void field(const std::string& key, const std::string& v) {
    out_ << YAML::Key << key << YAML::Value;
    str(v);
  }
  void field(const std::string& key, int64_t v) { out_ << YAML::Key << key << YAML::Value << v; }
  void field(const std::string& key, double v) {
    out_ << YAML::Key << key << YAML::Value << format_number(v);
  }
  void field(const std::string& key, bool v) { out_ << YAML::Key << key << YAML::Value << v; }
  void field(const std::string& key, const std::vector<int64_t>& v) {
    out_ << YAML::Key << key << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (int64_t x : v) out_ << x;
    out_ << YAML::EndSeq;
  }
  static constexpr bool reading() { return false; }
  void field(const std::string& key, const Strings& v) {
    out_ << YAML::Key << key << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (const auto& item : v) str(item);
    out_ << YAML::EndSeq;
  }
  void field(const std::string& key, const std::map<std::string, std::string>& v) {
    out_ << YAML::Key << key << YAML::Value;
    if (v.empty()) out_ << YAML::Flow;
    out_ << YAML::BeginMap;
    for (const auto& kv : v) {
      out_ << YAML::Key << kv.first << YAML::Value;
      str(kv.second);
    }
    out_ << YAML::EndMap;
  }
  void choose(const std::string& key, const std::string& v, const Strings&) { field(key, v); }
  void optional(const std::string& key, double v, double absent) {
    if (v != absent && !(std::isnan(v) && std::isnan(absent))) field(key, v);
  }
  template <class F>
  void nested(const std::string& key, F&& write_from) {
    out_ << YAML::Key << key << YAML::Value << YAML::BeginMap;
    write_from(*this);
    out_ << YAML::EndMap;
  }
  template <class T>
  void section(const std::string& key, T& in) {
    nested(key, [&](Writer& sub) { visit(sub, in); });
  }
  void check(bool, const std::string&, const std::string&) const {}
  void check_rule(bool, const std::string&, const std::string&) const {}
  bool has(const std::string&) const { return true; }
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

std::string emit(RunConfig c) {
  Writer w;
  visit(w, c);
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
  if (cfg.train.data.path.empty())
    throw ConfigError(origin("data.path") +
                      ": data.path: not set; set it to the dataset location (for format idx: "
                      "the folder with the *-ubyte files, e.g. "
                      "/usr/share/datasets/fashion-mnist) or add data.path=DIR");
  require_exists("data.path", cfg.train.data.path);
  if (!cfg.train.eval.fid_features.empty() && cfg.train.eval.fid_features != "builtin")
    require_exists("eval.fid.features", cfg.train.eval.fid_features);
  if (!cfg.train.eval.fid_reference.empty()) require_exists("eval.fid.reference", cfg.train.eval.fid_reference);
  // The held-out split is checked here, before anything trains: a run must never find out at
  // its final evaluation that the split is missing, nor evaluate on the training images.
  const TrainerOptions& t = cfg.train;
  const bool held_out = (t.eval.bpd || (t.eval.fid && t.eval.fid_reference.empty())) && (t.eval_every > 0 || t.eval_final);
  for (const auto& [key, data] : {std::make_pair(std::string("data.split"), t.data),
                                  std::make_pair(std::string("data.eval_split"), t.eval_data)}) {
    if (key == "data.eval_split" && !held_out) continue;
    try {
      check_split(data);
    } catch (const std::runtime_error& e) {
      throw ConfigError(origin(key) + ": " + key + ": " + e.what() +
                        (key == "data.eval_split" ? "; or turn off what needs it (eval.bpd=false, eval.fid.enabled=false)" : ""));
    }
  }
}

}  // namespace vdm
