// Each `vdm` subcommand registers itself on the CLI11 app through one of these functions.
#pragma once

namespace CLI {
class App;
}

namespace vdm {

void add_inspect_command(CLI::App& app);
void add_pack_command(CLI::App& app);

}  // namespace vdm
