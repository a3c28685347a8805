// Running another program from vdm without a shell (sbatch for `vdm submit`, `vdm train` for
// `vdm sweep --local`): arguments go to execvp as they are, so nothing in them is interpreted.
#pragma once

#include <string>
#include <vector>

namespace vdm {

struct ChildResult {
  int exit_code = -1;  // the program's exit code; 128 + N when killed by signal N
  std::string output;  // stdout (capture_output only)
};

// Runs argv[0] (looked up in PATH) and returns its exit code and stdout; stderr passes through.
// Throws std::runtime_error when it cannot be started.
ChildResult capture_output(const std::vector<std::string>& argv);

// Runs argv[0] with stdout and stderr appended to log_path; waits; returns the exit code.
int run_logged(const std::vector<std::string>& argv, const std::string& log_path);

// The absolute path of the running executable (/proc/self/exe).
std::string current_executable();

}  // namespace vdm
