// The vdm command line: parses the subcommand and hands over to launch/.
#include "launch/cli.h"

int main(int argc, char** argv) { return vdm::run_cli(argc, argv); }
