// A small SVG plot writer for the figures vdm draws (weightings, loss curves, reports): lines, bars;
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

// Text for SVG or HTML: & < > " as entities.
std::string xml_escape(const std::string& s);

std::string render_svg_plot(const std::vector<PlotSeries>& series, const PlotOptions& options);

// One bar per item, value printed on top; a non-finite value draws no bar, only its note
// ("missing", "failed"), so absent results stay visible.
struct BarItem {
  std::string label;
  double value;
  std::string note;
};
std::string render_svg_bars(const std::vector<BarItem>& bars, const PlotOptions& options);

}  // namespace vdm
