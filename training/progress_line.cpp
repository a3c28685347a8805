// Progress line (see progress_line.h).
#include "training/progress_line.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdio>

namespace vdm {

ProgressLine::ProgressLine(bool enabled, double interval_s)
    : enabled_(enabled), tty_(enabled && ::isatty(STDERR_FILENO)), interval_s_(interval_s), last_(SteadyClock::now()) {}

ProgressLine::~ProgressLine() { break_line(); }

void ProgressLine::update(const std::string& text, bool last) {
  if (!enabled_ || text == last_text_) return;  // a repeated final report says nothing new
  last_text_ = text;
  const auto now = SteadyClock::now();
  if (tty_) {
    std::fprintf(stderr, "\r%-100s", text.c_str());
    open_ = true;
    if (last) break_line();
    return;
  }
  if (!last && shown_any_ && seconds_between(last_, now) < interval_s_) return;
  last_ = now;
  shown_any_ = true;
  spdlog::info("{}", text);
}

void ProgressLine::break_line() {
  if (!open_) return;
  std::fprintf(stderr, "\n");
  open_ = false;
}

}  // namespace vdm
