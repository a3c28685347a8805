// A sweep file (docs/slurm.md): a base config, common overrides, and points given as a list
// and/or a grid, expanded into one labelled override list per point. Read here, run by
// `vdm sweep`, summarised by `vdm report` from SWEEP_DIR/sweep.json.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vdm {

struct SweepPoint {
  std::string label;                   // file-name safe, e.g. sigmoid_bias=-2
  std::vector<std::string> overrides;  // the point's own key=value overrides
};

struct Sweep {
  std::string name;    // names SWEEP_DIR (runs/<name>) and the job
  std::string source;  // the sweep file
  std::string base;    // the base config, relative to the sweep file's folder when not absolute
  std::vector<std::string> overrides;  // applied to every point, before the point's own
  std::vector<SweepPoint> points;
  int64_t max_parallel = 0;  // job array: at most this many points at once; 0: no limit
};

// Reads and expands a sweep file. Throws ConfigError naming file:line, key and the fix.
Sweep load_sweep(const std::string& path);

// "<index>_<label>", the point's folder in SWEEP_DIR (index zero-padded to sort).
std::string point_dir_name(const Sweep& sweep, size_t index);

}  // namespace vdm
