// The vdm command line (docs/design.md §8): CLI11 subcommands, error reporting and exit codes.
// Exit codes: 0 success, 1 runtime failure, 2 bad input (usage, config, missing file).
#pragma once

namespace vdm {

int run_cli(int argc, char** argv);

}  // namespace vdm
