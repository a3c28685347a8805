// Wall-clock helpers shared by the progress lines of training, evaluation and sampling:
// seconds between two steady-clock points, and a duration as H:MM:SS.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>

namespace vdm {

using SteadyClock = std::chrono::steady_clock;

inline double seconds_between(SteadyClock::time_point a, SteadyClock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

inline std::string clock_text(double seconds) {
  const long s = long(std::max(0.0, seconds) + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
  return buf;
}

}  // namespace vdm
