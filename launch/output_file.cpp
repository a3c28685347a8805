// Whole-file writes for the command line's outputs (CSV, SVG, reports).
#include "launch/output_file.h"

#include <cstdio>
#include <fstream>
#include <stdexcept>

namespace vdm {

void write_file_atomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error("cannot write " + path + ": check the folder exists and is writable");
    out << text;
    out.flush();
    if (!out) throw std::runtime_error("writing " + path + " failed (disk full?)");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    throw std::runtime_error("cannot rename " + tmp + " to " + path);
}

}  // namespace vdm
