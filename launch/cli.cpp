// Builds the CLI11 app from the subcommands and turns every failure into one clear message
// and a documented exit code, never a stack dump.
#include "launch/cli.h"

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <exception>
#include <iostream>

#include "launch/commands.h"
#include "launch/config.h"

namespace vdm {

int run_cli(int argc, char** argv) {
  auto logger = spdlog::stderr_color_mt("vdm");
  logger->set_pattern("[%H:%M:%S] %^%l%$ %v");
  spdlog::set_default_logger(logger);

  CLI::App app{"vdm: variational diffusion models on many machines"};
  app.require_subcommand(1);
  add_inspect_command(app);
  add_pack_command(app);
  add_train_command(app);
  add_fid_command(app);
  add_sample_command(app);
  add_eval_command(app);
  add_submit_command(app);
  add_sweep_command(app);
  add_report_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CommandExit& e) {
    return e.code;
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  } catch (const ConfigError& e) {
    std::cerr << "vdm: " << e.what() << "\n";
    return 2;
  } catch (const UsageError& e) {
    std::cerr << "vdm: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "vdm: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace vdm
