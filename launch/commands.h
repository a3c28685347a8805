// Each `vdm` subcommand registers itself on the CLI11 app through one of these functions.
#pragma once

#include <stdexcept>

namespace CLI {
class App;
}

namespace vdm {

// A command's callback throws this to end `vdm` with its exit code (after CLI11 has returned).
struct CommandExit {
  int code;
};

// A command-line argument that cannot work, other than the config: a path that does not exist
// (--resume, --out, an .npz file), a flag the model does not fit (--class, --guidance). what()
// names the argument and the fix; `vdm` prints it and exits 2, as for a ConfigError.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void add_inspect_command(CLI::App& app);
void add_train_command(CLI::App& app);
void add_pack_command(CLI::App& app);
void add_fid_command(CLI::App& app);
void add_sample_command(CLI::App& app);
void add_eval_command(CLI::App& app);
void add_submit_command(CLI::App& app);
void add_sweep_command(CLI::App& app);
void add_report_command(CLI::App& app);

}  // namespace vdm
