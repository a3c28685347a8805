// Renders the sbatch script (see slurm_script.h). The template's @@NAME@@ fields are filled in
// one pass, so a value that happens to contain "@@...@@" is never expanded again.
#include "launch/slurm_script.h"

#include <fstream>
#include <map>
#include <sstream>

#include "launch/child_process.h"
#include "vdm_builtin_configs.h"

namespace vdm {
namespace {

bool is_control(char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }

// For comments: a newline would end the comment and start a command.
std::string one_line(const std::string& text) {
  std::string out = text;
  for (char& c : out)
    if (is_control(c)) c = ' ';
  return out;
}

// Slurm expands %j, %A, %a, ... in --output; a literal '%' in the path is written %%.
std::string output_pattern(const std::string& dir, const std::string& file) {
  std::string out;
  for (char c : dir) out += c == '%' ? std::string("%%") : std::string(1, c);
  return out + "/" + file;
}

std::string fill(const std::string& tmpl, const std::map<std::string, std::string>& fields,
                 const std::string& template_name) {
  std::string out;
  size_t pos = 0;
  while (true) {
    const size_t open = tmpl.find("@@", pos);
    if (open == std::string::npos) break;
    const size_t close = tmpl.find("@@", open + 2);
    if (close == std::string::npos) break;
    const std::string name = tmpl.substr(open + 2, close - open - 2);
    const auto it = fields.find(name);
    if (it == fields.end()) {
      std::string known;
      for (const auto& kv : fields) known += (known.empty() ? "" : ", ") + ("@@" + kv.first + "@@");
      throw ConfigError(template_name + ": unknown field @@" + name + "@@ (fields: " + known + ")");
    }
    out += tmpl.substr(pos, open - pos) + it->second;
    pos = close + 2;
  }
  return out + tmpl.substr(pos);
}

}  // namespace

std::string shell_quote(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string sbatch_quote(const std::string& text, const std::string& what) {
  std::string out = "\"";
  for (char c : text) {
    if (is_control(c))
      throw ConfigError(what + ": contains a control character (newline, tab, ...), which an "
                               "#SBATCH line cannot hold; remove it");
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string slurm_template(const SlurmConfig& slurm) {
  if (slurm.template_path.empty()) return kSlurmJobTemplate;
  std::ifstream in(slurm.template_path, std::ios::binary);
  if (!in)
    throw ConfigError("slurm.template: cannot read '" + slurm.template_path +
                      "'; fix the path or remove the key to use the built-in template");
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string sbatch_submit(const std::string& script_path) {
  ChildResult r;
  try {
    r = capture_output({"sbatch", "--parsable", script_path});
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(std::string(e.what()) + "; is this a Slurm login node? (--dry-run prints "
                             "the script without submitting it)");
  }
  if (r.exit_code != 0)
    throw std::runtime_error("sbatch " + script_path + " failed with exit code " +
                             std::to_string(r.exit_code) + " (its message is above)");
  // --parsable prints "ID" or "ID;CLUSTER".
  std::string id = r.output.substr(0, r.output.find_first_of(";\n"));
  if (id.empty() || id.find_first_not_of("0123456789_") != std::string::npos)
    throw std::runtime_error("sbatch printed no job id: '" + r.output + "'");
  return id;
}

std::string render_slurm_script(const SlurmScriptOptions& o) {
  const SlurmConfig& s = o.slurm;
  if (o.run_dirs.empty() || (!o.array && o.run_dirs.size() != 1))
    throw std::logic_error("render_slurm_script: one run directory per job (or array index)");

  std::string job_name = o.job_name;
  for (char& c : job_name)
    if (is_control(c)) c = '_';
  std::ostringstream d;
  d << "#SBATCH --job-name=" << sbatch_quote(job_name, "name") << "\n";
  d << "#SBATCH --nodes=" << s.nodes << "\n";
  d << "#SBATCH --ntasks-per-node=" << s.tasks_per_node << "\n";
  d << "#SBATCH --cpus-per-task=" << s.cpus_per_task << "\n";
  if (s.gpus_per_node > 0) d << "#SBATCH --gpus-per-node=" << s.gpus_per_node << "\n";
  d << "#SBATCH --time=" << sbatch_quote(s.time, "slurm.time") << "\n";
  if (!s.partition.empty()) d << "#SBATCH --partition=" << sbatch_quote(s.partition, "slurm.partition") << "\n";
  if (!s.account.empty()) d << "#SBATCH --account=" << sbatch_quote(s.account, "slurm.account") << "\n";
  if (!s.qos.empty()) d << "#SBATCH --qos=" << sbatch_quote(s.qos, "slurm.qos") << "\n";
  if (o.array) {
    d << "#SBATCH --array=0-" << o.run_dirs.size() - 1;
    if (o.max_parallel > 0) d << "%" << o.max_parallel;
    d << "\n";
  }
  d << "#SBATCH --output="
    << sbatch_quote(output_pattern(o.log_dir, o.array ? "slurm-%A_%a.out" : "slurm-%j.out"),
                    "the run directory (or sweep directory)")
    << "\n";
  // One log across requeues.
  d << "#SBATCH --open-mode=append\n";
  if (s.signal_lead_s > 0) d << "#SBATCH --signal=B:USR2@" << s.signal_lead_s << "\n";
  d << "#SBATCH --requeue\n";
  d << "#SBATCH --chdir=" << sbatch_quote(o.workdir, "the working directory") << "\n";
  for (size_t i = 0; i < s.extra.size(); ++i) {
    const std::string key = "slurm.extra[" + std::to_string(i) + "]";
    const std::string& line = s.extra[i];
    for (char c : line)
      if (is_control(c))
        throw ConfigError(key + ": contains a control character (newline, tab, ...); give one "
                                "sbatch option per list item");
    if (line.rfind("-", 0) != 0)
      throw ConfigError(key + ": '" + line + "' is not an sbatch option; write it as on the "
                        "sbatch command line, e.g. --exclusive or --constraint=a100");
    // Read by sbatch only; to bash the whole line is a comment.
    d << "#SBATCH " << line << "\n";
  }
  std::string directives = d.str();
  directives.pop_back();

  std::ostringstream env;
  if (s.env.empty()) env << "# (no slurm.env)";
  for (auto it = s.env.begin(); it != s.env.end(); ++it)
    env << (it == s.env.begin() ? "" : "\n") << "export " << it->first << "=" << shell_quote(it->second);

  std::ostringstream run;
  if (!o.array) {
    run << "RUN_DIR=" << shell_quote(o.run_dirs.front());
  } else {
    run << "# One run directory per array index (vdm sweep: SWEEP_DIR/<index>_<label>).\nRUN_DIRS=(";
    for (const auto& dir : o.run_dirs) run << "\n  " << shell_quote(dir);
    run << "\n)\nRUN_DIR=${RUN_DIRS[${SLURM_ARRAY_TASK_ID:?this script is a job array: submit it "
           "with sbatch}]}";
  }

  const std::map<std::string, std::string> fields = {
      {"HEADER", "Rendered by " + one_line(o.rendered_by) + "."},
      {"SBATCH", directives},
      {"ENVIRONMENT", env.str()},
      {"VDM", shell_quote(o.vdm)},
      {"LAUNCHER", s.launcher == "mpirun" ? "mpirun" : "srun"},
      {"CPUS_PER_TASK", std::to_string(s.cpus_per_task)},
      {"MAX_REQUEUES", std::to_string(s.max_requeues)},
      {"RUN_DIR", run.str()},
  };
  const std::string name = s.template_path.empty() ? "slurm/job.sbatch.in" : s.template_path;
  return fill(slurm_template(s), fields, name);
}

}  // namespace vdm
