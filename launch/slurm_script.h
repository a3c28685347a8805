// The sbatch script behind `vdm submit` and `vdm sweep`: the template (slurm/job.sbatch.in,
// compiled in, or slurm.template) filled with a config's slurm section. Config strings are
// quoted for the shell and for Slurm's #SBATCH parser, so none of them can run a command.
#pragma once

#include <string>
#include <vector>

#include "launch/config.h"

namespace vdm {

// 'text' for bash: literal whatever it holds (quotes, $(), backticks, newlines).
std::string shell_quote(const std::string& text);
// "text" for an #SBATCH line (Slurm's rule: backslash escapes " and \). A directive is one line,
// so control characters are refused: ConfigError naming `what`.
std::string sbatch_quote(const std::string& text, const std::string& what);

struct SlurmScriptOptions {
  SlurmConfig slurm;
  std::string job_name;
  std::string vdm;                    // absolute path of the vdm binary the job runs
  std::string workdir;                // --chdir: relative paths in the config resolve here
  std::vector<std::string> run_dirs;  // a single job's run directory, or one per array index
  bool array = false;                 // a job array (vdm sweep), even of one point
  std::string log_dir;                // where Slurm writes slurm-%j.out (slurm-%A_%a.out)
  int64_t max_parallel = 0;           // job arrays: at most this many at once; 0: no limit
  std::string rendered_by;            // the command line, for the header comment
};

// The script text. Throws ConfigError for values Slurm cannot take (a newline in a directive).
std::string render_slurm_script(const SlurmScriptOptions& options);

// The template text: slurm.template's file when set, else the built-in one.
std::string slurm_template(const SlurmConfig& slurm);

// `sbatch --parsable SCRIPT`: returns the job id; throws std::runtime_error with sbatch's exit
// code when it fails (its own message is on stderr).
std::string sbatch_submit(const std::string& script_path);

}  // namespace vdm
