// A small SVG line-plot writer for the figures vdm draws (weightings, loss curves, reports):
// self-contained files a browser shows, with axes, ticks and a legend; no plotting library.
#pragma once

#include <string>
#include <vector>

namespace vdm {

struct PlotSeries {
  std::string label;
  std::vector<double> x, y;  // non-finite points break the line
  bool dashed = false;
};

struct PlotOptions {
  std::string title, x_label, y_label;
  int width = 760, height = 460;
  bool log_y = false;
};

std::string render_svg_plot(const std::vector<PlotSeries>& series, const PlotOptions& options);

}  // namespace vdm
