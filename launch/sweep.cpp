// Sweep files -> expanded points (see sweep.h). A grid multiplies: a point's own grid expands that
// point; the top-level grid crosses every point (or makes the points when there is no list).
#include "launch/sweep.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "launch/config.h"

namespace vdm {
namespace {

using Strings = std::vector<std::string>;

class Reader {
 public:
  explicit Reader(std::string source) : source_(std::move(source)) {}

  [[noreturn]] void fail(const YAML::Node& node, const std::string& key, const std::string& what) const {
    std::string where = source_;
    if (node.IsDefined() && node.Mark().line >= 0) where += ":" + std::to_string(node.Mark().line + 1);
    throw ConfigError(where + ": " + key + ": " + what);
  }

  void check_keys(const YAML::Node& map, const std::string& path, const Strings& known) const {
    for (const auto& kv : map) {
      const std::string key = kv.first.as<std::string>("");
      if (std::find(known.begin(), known.end(), key) == known.end()) {
        std::string list;
        for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
        fail(kv.first, path + key, "unknown key (valid keys: " + list + ")");
      }
    }
  }

  // key=value overrides, written as a list of "key=value" strings or a map {key: value}.
  Strings overrides(const YAML::Node& node, const std::string& key) const {
    Strings out;
    if (!node.IsDefined() || node.IsNull()) return out;
    if (node.IsSequence()) {
      for (const auto& item : node) {
        if (!item.IsScalar() || item.Scalar().find('=') == std::string::npos)
          fail(item, key, "expected key.path=value strings, e.g. [train.steps=100]");
        out.push_back(item.Scalar());
      }
    } else if (node.IsMap()) {
      for (const auto& kv : node) out.push_back(kv.first.Scalar() + "=" + yaml_text(kv.second));
    } else {
      fail(node, key, "expected a list [key=value, ...] or a map {key: value}");
    }
    return out;
  }

  // The grid's axes in file order: (key, [values as YAML text]).
  std::vector<std::pair<std::string, Strings>> grid(const YAML::Node& node, const std::string& key) const {
    std::vector<std::pair<std::string, Strings>> axes;
    if (!node.IsDefined() || node.IsNull()) return axes;
    if (!node.IsMap()) fail(node, key, "expected a map {key.path: [value, ...]}");
    for (const auto& kv : node) {
      const std::string axis = kv.first.Scalar();
      if (!kv.second.IsSequence() || kv.second.size() == 0)
        fail(kv.second, key + "." + axis, "expected a non-empty list of values, e.g. [-2, 0, 2]");
      Strings values;
      for (const auto& v : kv.second) values.push_back(yaml_text(v));
      axes.emplace_back(axis, values);
    }
    return axes;
  }

  static std::string yaml_text(const YAML::Node& node) {
    if (node.IsScalar()) {
      // Plain scalars stay as written ("sigmoid", "-2"); others are emitted so they parse back.
      const std::string& s = node.Scalar();
      if (node.Tag() != "!" && s.find_first_of(":#{}[],&*!|>'\"%@`\n") == std::string::npos && !s.empty())
        return s;
    }
    YAML::Emitter e;
    e << YAML::Flow << node;
    return e.c_str();
  }

 private:
  std::string source_;
};

std::string safe_label(const std::string& text) {
  std::string out;
  for (char c : text) out += (std::isalnum(static_cast<unsigned char>(c)) || std::strchr("._=+-", c)) ? c : '_';
  return out;
}

// Every combination of the axes, as (overrides, label suffix).
std::vector<std::pair<Strings, std::string>> expand(const std::vector<std::pair<std::string, Strings>>& axes) {
  std::vector<std::pair<Strings, std::string>> out{{{}, ""}};
  for (const auto& [key, values] : axes) {
    const std::string short_key = key.substr(key.rfind('.') + 1);
    std::vector<std::pair<Strings, std::string>> next;
    for (const auto& [overrides, label] : out)
      for (const auto& v : values) {
        Strings o = overrides;
        o.push_back(key + "=" + v);
        next.emplace_back(o, label + (label.empty() ? "" : "_") + short_key + "=" + v);
      }
    out = std::move(next);
  }
  return out;
}

}  // namespace

Sweep load_sweep(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_regular_file(path, ec))
    throw ConfigError(path + ": sweep file not found; e.g. vdm sweep configs/sweeps/fashion_mnist_weighting.yaml");
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    throw ConfigError(path + ":" + std::to_string(e.mark.line + 1) + ": invalid YAML: " + e.msg);
  }
  Reader r(path);
  if (!root.IsMap()) r.fail(root, "top level", "expected a map with base, points and/or grid");
  r.check_keys(root, "", {"name", "base", "overrides", "points", "grid", "max_parallel"});

  Sweep s;
  s.source = path;
  s.name = root["name"] ? root["name"].as<std::string>("") : fs::path(path).stem().string();
  if (s.name.empty() || safe_label(s.name) != s.name)
    r.fail(root["name"], "name", "must be a plain name (letters, digits, . _ = + -): it names the sweep folder");
  if (!root["base"] || !root["base"].IsScalar())
    r.fail(root, "base", "missing: name the base config, e.g. base: ../quickstart.yaml (relative to this file)");
  s.base = root["base"].Scalar();
  if (fs::path(s.base).is_relative()) s.base = (fs::path(path).parent_path() / s.base).lexically_normal().string();
  if (!fs::is_regular_file(s.base, ec))
    r.fail(root["base"], "base", "'" + s.base + "' does not exist; the path is relative to the sweep file's folder");
  s.overrides = r.overrides(root["overrides"], "overrides");
  if (root["max_parallel"]) {
    try {
      s.max_parallel = root["max_parallel"].as<int64_t>();
    } catch (const YAML::Exception&) {
      s.max_parallel = -1;
    }
    if (s.max_parallel < 0) r.fail(root["max_parallel"], "max_parallel", "must be an integer >= 0 (0: no limit)");
  }

  std::vector<SweepPoint> listed;
  const YAML::Node points = root["points"];
  if (points && !points.IsSequence()) r.fail(points, "points", "expected a list of {label, overrides, grid}");
  for (size_t i = 0; points && i < points.size(); ++i) {
    const YAML::Node p = points[i];
    const std::string key = "points[" + std::to_string(i) + "]";
    if (!p.IsMap()) r.fail(p, key, "expected a map {label: ..., overrides: [...], grid: {...}}");
    r.check_keys(p, key + ".", {"label", "overrides", "grid"});
    if (!p["label"] || !p["label"].IsScalar() || p["label"].Scalar().empty())
      r.fail(p, key + ".label", "missing: give each point a label, e.g. label: elbo");
    const Strings own = r.overrides(p["overrides"], key + ".overrides");
    for (const auto& [grid_overrides, suffix] : expand(r.grid(p["grid"], key + ".grid"))) {
      SweepPoint point{safe_label(p["label"].Scalar() + (suffix.empty() ? "" : "_" + suffix)), own};
      point.overrides.insert(point.overrides.end(), grid_overrides.begin(), grid_overrides.end());
      listed.push_back(point);
    }
  }
  if (listed.empty()) listed.push_back({"", {}});
  for (const auto& [grid_overrides, suffix] : expand(r.grid(root["grid"], "grid")))
    for (const auto& p : listed) {
      SweepPoint point = p;
      point.label = safe_label(p.label + (p.label.empty() || suffix.empty() ? "" : "_") + suffix);
      if (point.label.empty()) point.label = "base";
      point.overrides.insert(point.overrides.end(), grid_overrides.begin(), grid_overrides.end());
      s.points.push_back(point);
    }
  return s;
}

std::string point_dir_name(const Sweep& sweep, size_t index) {
  const size_t width = std::to_string(std::max<size_t>(sweep.points.size(), 1) - 1).size();
  std::string number = std::to_string(index);
  number.insert(0, width - std::min(width, number.size()), '0');
  return number + "_" + sweep.points[index].label;
}

}  // namespace vdm
