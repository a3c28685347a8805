// Whole-file writes for the command line's outputs (CSV, SVG, reports): a reader never sees
// half a file, because the text goes to a temporary name first and is then renamed.
#pragma once

#include <string>

namespace vdm {

void write_file_atomically(const std::string& path, const std::string& text);

}  // namespace vdm
