// Each `vdm` subcommand registers itself on the CLI11 app through one of these functions.
#pragma once

namespace CLI {
class App;
}

namespace vdm {

// A command's callback throws this to end `vdm` with its exit code (after CLI11 has returned).
struct CommandExit {
  int code;
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
