// One progress line for long work (training, sampling, packing): on a terminal a line rewritten
// in place; in a log (Slurm's output file) an ordinary log line at most every `interval_s`, so
// batch logs stay short while short runs stay quiet.
#pragma once

#include <string>

#include "training/elapsed_time.h"

namespace vdm {

class ProgressLine {
 public:
  // enabled = false (ranks other than 0) makes every call a no-op. interval_s: the least time
  // between two lines in a log (0: every update); a terminal shows every update.
  ProgressLine(bool enabled, double interval_s);
  ~ProgressLine();  // ends a rewritten line that is still open
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;

  // last: the final update (always shown, and a terminal line is ended).
  void update(const std::string& text, bool last = false);
  // Ends a rewritten line before other output (a warning) would run into it.
  void break_line();
  bool on_terminal() const { return tty_; }

 private:
  bool enabled_, tty_;
  bool open_ = false;  // a rewritten line is on the terminal
  double interval_s_;
  SteadyClock::time_point last_;
  bool shown_any_ = false;
  std::string last_text_;
};

}  // namespace vdm
