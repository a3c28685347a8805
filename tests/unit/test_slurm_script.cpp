// The sbatch script renderer and sweep files: quoting that keeps hostile strings literal (checked
// by bash itself), the directives a config produces, and how points and grids expand.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "launch/config.h"
#include "launch/slurm_script.h"
#include "launch/sweep.h"
#include "tests/test_support.h"

namespace {

namespace fs = std::filesystem;

const std::string kNasty = "it's \"q\" $(touch pwned) `touch pwned2` ${HOME} \\ \n; touch pwned3";

std::string run(const std::string& command) {
  std::string out;
  FILE* p = popen(command.c_str(), "r");
  char buf[512];
  for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  EXPECT_EQ(pclose(p), 0) << command;
  return out;
}

void write(const fs::path& path, const std::string& text) { std::ofstream(path) << text; }

vdm::SlurmScriptOptions options(const fs::path& dir) {
  vdm::SlurmScriptOptions o;
  o.job_name = "job";
  o.vdm = "/opt/vdm/bin/vdm";
  o.workdir = dir.string();
  o.run_dirs = {(dir / "run").string()};
  o.log_dir = (dir / "run").string();
  o.rendered_by = "vdm submit test";
  return o;
}

TEST(SlurmScript, ShellQuoteIsLiteralToBash) {
  const TempDir tmp;
  const fs::path& dir = tmp.path;
  write(dir / "echo.sh", "cd " + vdm::shell_quote(dir.string()) + " && printf '%s' " + vdm::shell_quote(kNasty) + "\n");
  EXPECT_EQ(run("bash " + (dir / "echo.sh").string()), kNasty);
  EXPECT_FALSE(fs::exists(dir / "pwned") || fs::exists(dir / "pwned2") || fs::exists(dir / "pwned3"));
  EXPECT_EQ(vdm::shell_quote(""), "''");
}

TEST(SlurmScript, SbatchQuoteEscapesAndRefusesControlCharacters) {
  EXPECT_EQ(vdm::sbatch_quote("a\"b\\c $(x)", "k"), "\"a\\\"b\\\\c $(x)\"");
  try {
    vdm::sbatch_quote("a\nb", "slurm.partition");
    FAIL() << "a newline was accepted";
  } catch (const vdm::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("slurm.partition: contains a control character"), std::string::npos);
  }
}

TEST(SlurmScript, RendersDirectivesAndValidBash) {
  const TempDir tmp;
  const fs::path& dir = tmp.path;
  vdm::SlurmScriptOptions o = options(dir);
  o.slurm.nodes = 2;
  o.slurm.tasks_per_node = 4;
  o.slurm.gpus_per_node = 4;
  o.slurm.partition = "gpu$(touch pwned)";
  o.slurm.extra = {"--exclusive"};
  o.slurm.env = {{"MSG", kNasty}};
  o.slurm.signal_lead_s = 120;
  o.slurm.launcher = "mpirun";
  const std::string s = vdm::render_slurm_script(o);
  for (const char* line : {"#SBATCH --nodes=2\n", "#SBATCH --ntasks-per-node=4\n", "#SBATCH --gpus-per-node=4\n",
                           "#SBATCH --partition=\"gpu$(touch pwned)\"\n", "#SBATCH --exclusive\n",
                           "#SBATCH --signal=B:USR2@120\n", "#SBATCH --open-mode=append\n", "#SBATCH --requeue\n",
                           "LAUNCHER=mpirun\n", "VDM='/opt/vdm/bin/vdm'\n", "scontrol requeue"})
    EXPECT_NE(s.find(line), std::string::npos) << line << "\n" << s;
  EXPECT_EQ(s.find("@@"), std::string::npos);
  write(dir / "job.sbatch", s);
  run("bash -n " + (dir / "job.sbatch").string());
  // Only the assignments, run by bash: the value arrives intact and nothing runs.
  std::string assignments;
  std::istringstream lines(s);
  bool in_env = false;
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("export MSG=", 0) == 0) in_env = true;
    if (in_env) assignments += line + "\n";
    if (in_env && line.find("VDM=") == 0) break;
  }
  write(dir / "env.sh", "cd " + vdm::shell_quote(dir.string()) + "\n" + assignments + "printf '%s' \"$MSG\"\n");
  EXPECT_EQ(run("bash " + (dir / "env.sh").string()), kNasty);
  EXPECT_FALSE(fs::exists(dir / "pwned") || fs::exists(dir / "pwned3"));
}

TEST(SlurmScript, JobArrayPicksTheRunDirectoryByIndex) {
  const TempDir tmp;
  const fs::path& dir = tmp.path;
  vdm::SlurmScriptOptions o = options(dir);
  o.array = true;
  o.run_dirs = {"/s/0_a", "/s/1_it's", "/s/2_c"};
  o.max_parallel = 2;
  const std::string s = vdm::render_slurm_script(o);
  EXPECT_NE(s.find("#SBATCH --array=0-2%2\n"), std::string::npos);
  EXPECT_NE(s.find("slurm-%A_%a.out"), std::string::npos);
  std::string run_dirs = s.substr(s.find("RUN_DIRS=("));
  run_dirs = run_dirs.substr(0, run_dirs.find("\n\n"));
  write(dir / "pick.sh", run_dirs + "\nprintf '%s' \"$RUN_DIR\"\n");
  EXPECT_EQ(run("SLURM_ARRAY_TASK_ID=1 bash " + (dir / "pick.sh").string()), "/s/1_it's");
}

TEST(SlurmScript, ExtraMustBeOneSbatchOption) {
  const TempDir tmp;
  const fs::path& dir = tmp.path;
  vdm::SlurmScriptOptions o = options(dir);
  o.slurm.extra = {"echo hi"};
  EXPECT_THROW(vdm::render_slurm_script(o), vdm::ConfigError);
  o.slurm.extra = {"--comment=a\nrm -rf /"};
  EXPECT_THROW(vdm::render_slurm_script(o), vdm::ConfigError);
}

TEST(SlurmScript, ConfigKeysAndOwnTemplate) {
  const TempDir tmp;
  const fs::path& dir = tmp.path;
  write(dir / "t.sbatch", "#!/bin/bash\n@@SBATCH@@\nmodule load cuda\n@@RUN_DIR@@\nVDM=@@VDM@@\n");
  const vdm::RunConfig c = vdm::parse_config(
      "slurm: {vdm: /opt/vdm, template: '" + (dir / "t.sbatch").string() + "'}\n", "c.yaml");
  EXPECT_EQ(c.slurm.vdm, "/opt/vdm");
  EXPECT_EQ(vdm::parse_config(c.resolved_yaml, "config.yaml").slurm.template_path, (dir / "t.sbatch").string());
  vdm::SlurmScriptOptions o = options(dir);
  o.slurm = c.slurm;
  const std::string s = vdm::render_slurm_script(o);
  EXPECT_NE(s.find("module load cuda\nRUN_DIR='"), std::string::npos) << s;
  write(dir / "t.sbatch", "@@SBATCH@@ @@NOPE@@\n");
  try {
    vdm::render_slurm_script(o);
    FAIL() << "an unknown field was accepted";
  } catch (const vdm::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("unknown field @@NOPE@@"), std::string::npos) << e.what();
  }
}

TEST(SlurmScript, RequeueLimit) {
  const TempDir tmp;
  const fs::path& dir = tmp.path;
  vdm::SlurmScriptOptions o = options(dir);
  o.slurm = vdm::parse_config("slurm: {max_requeues: 7}\n", "c.yaml").slurm;
  EXPECT_NE(vdm::render_slurm_script(o).find("\nMAX_REQUEUES=7\n"), std::string::npos);
  try {
    vdm::parse_config("slurm:\n  max_requeues: -1\n", "c.yaml");
    FAIL() << "a negative requeue limit was accepted";
  } catch (const vdm::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("c.yaml:2: slurm.max_requeues: must be >= 0"), std::string::npos)
        << e.what();
  }
}

TEST(Sweep, PointsGridsAndLabels) {
  const TempDir tmp;
  const fs::path& dir = tmp.path;
  write(dir / "base.yaml", "name: base\n");
  write(dir / "s.yaml", R"(
base: base.yaml
max_parallel: 3
overrides: {train.steps: 10, eval.fid: {enabled: false}}
points:
  - {label: elbo, overrides: [objective.weighting.name=elbo]}
  - label: sigmoid
    overrides: [objective.weighting.name=sigmoid]
    grid: {objective.weighting.bias: [-2, 0, 2]}
  - {label: "eps mse", overrides: [objective.name=eps_mse]}
grid: {seed: [0, 1]}
)");
  const vdm::Sweep s = vdm::load_sweep((dir / "s.yaml").string());
  EXPECT_EQ(s.name, "s");
  EXPECT_EQ(s.max_parallel, 3);
  EXPECT_EQ(s.base, (dir / "base.yaml").string());
  ASSERT_EQ(s.overrides.size(), 2u);
  EXPECT_EQ(s.overrides[0], "train.steps=10");
  EXPECT_EQ(s.overrides[1], "eval.fid={enabled: false}");
  ASSERT_EQ(s.points.size(), 10u);  // (1 + 3 + 1) x 2 seeds
  EXPECT_EQ(s.points[0].label, "elbo_seed=0");
  EXPECT_EQ(s.points[1].label, "sigmoid_bias=-2_seed=0");
  EXPECT_EQ(s.points[4].label, "eps_mse_seed=0");
  EXPECT_EQ(s.points[5].label, "elbo_seed=1");
  EXPECT_EQ(s.points[2].overrides,
            (std::vector<std::string>{"objective.weighting.name=sigmoid", "objective.weighting.bias=0", "seed=0"}));
  EXPECT_EQ(vdm::point_dir_name(s, 4), "4_eps_mse_seed=0");
}

TEST(Sweep, ErrorsNameTheLineAndKey) {
  const TempDir tmp;
  const fs::path& dir = tmp.path;
  write(dir / "base.yaml", "name: base\n");
  write(dir / "bad.yaml", "base: base.yaml\npoints:\n  - {label: a, overides: [x=1]}\n");
  try {
    vdm::load_sweep((dir / "bad.yaml").string());
    FAIL() << "an unknown key was accepted";
  } catch (const vdm::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("bad.yaml:3: points[0].overides: unknown key"), std::string::npos) << e.what();
  }
  write(dir / "nobase.yaml", "base: missing.yaml\n");
  EXPECT_THROW(vdm::load_sweep((dir / "nobase.yaml").string()), vdm::ConfigError);
}

}  // namespace
