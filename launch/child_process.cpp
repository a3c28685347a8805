// fork + execvp with pipes or a log file (see child_process.h).
#include "launch/child_process.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

namespace vdm {
namespace {

std::vector<char*> c_argv(const std::vector<std::string>& argv) {
  std::vector<char*> out;
  for (const auto& a : argv) out.push_back(const_cast<char*>(a.c_str()));
  out.push_back(nullptr);
  return out;
}

int wait_for(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) throw std::runtime_error(std::string("waitpid: ") + std::strerror(errno));
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// The child reports a failed exec through this pipe (closed on a successful exec), so the
// parent can say "cannot run sbatch" instead of returning exit code 127.
void exec_or_report(const std::vector<std::string>& argv, int report_fd) {
  auto args = c_argv(argv);
  execvp(args[0], args.data());
  const int err = errno;
  (void)!write(report_fd, &err, sizeof err);
  _exit(127);
}

int start_error(int report_fd) {
  int err = 0;
  const ssize_t n = read(report_fd, &err, sizeof err);
  close(report_fd);
  return n == sizeof err ? err : 0;
}

}  // namespace

ChildResult capture_output(const std::vector<std::string>& argv) {
  int out[2], report[2];
  if (pipe(out) != 0 || pipe2(report, O_CLOEXEC) != 0)
    throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    dup2(out[1], STDOUT_FILENO);
    close(out[0]);
    close(out[1]);
    close(report[0]);
    exec_or_report(argv, report[1]);
  }
  close(out[1]);
  close(report[1]);
  ChildResult result;
  char buf[4096];
  for (ssize_t n; (n = read(out[0], buf, sizeof buf)) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    result.output.append(buf, static_cast<size_t>(n));
  }
  close(out[0]);
  const int err = start_error(report[0]);
  result.exit_code = wait_for(pid);
  if (err != 0) throw std::runtime_error("cannot run " + argv[0] + ": " + std::strerror(err));
  return result;
}

int run_logged(const std::vector<std::string>& argv, const std::string& log_path) {
  const int log = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log < 0) throw std::runtime_error("cannot open " + log_path + ": " + std::strerror(errno));
  int report[2];
  if (pipe2(report, O_CLOEXEC) != 0) throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    dup2(log, STDOUT_FILENO);
    dup2(log, STDERR_FILENO);
    close(report[0]);
    exec_or_report(argv, report[1]);
  }
  close(log);
  close(report[1]);
  const int err = start_error(report[0]);
  const int code = wait_for(pid);
  if (err != 0) throw std::runtime_error("cannot run " + argv[0] + ": " + std::strerror(err));
  return code;
}

std::string current_executable() {
  std::error_code ec;
  const auto path = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) throw std::runtime_error("cannot find the vdm executable (/proc/self/exe): " + ec.message());
  return path.string();
}

}  // namespace vdm
