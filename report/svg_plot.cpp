// SVG line plots (see svg_plot.h).
#include "report/svg_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>

namespace vdm {
namespace {

const char* kPalette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                          "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};


std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

// "Nice" tick positions (1, 2, 5 x 10^k steps) covering [lo, hi].
std::vector<double> ticks(double lo, double hi, int target) {
  const double raw = (hi - lo) / std::max(1, target);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (raw <= m * mag) { step = m * mag; break; }
  std::vector<double> out;
  for (double v = std::ceil(lo / step) * step; v <= hi + 1e-9 * step; v += step)
    out.push_back(std::abs(v) < 1e-12 * step ? 0.0 : v);
  return out;
}

// For a log axis (lo, hi are log10 values): log10 of the 1-2-5 values in range, or of every
// integer multiple of a power of ten when the range is too short for three of those.
std::vector<double> log_ticks(double lo, double hi) {
  std::vector<double> out;
  for (const std::vector<double>& mantissas : {std::vector<double>{1, 2, 5}, std::vector<double>{1, 2, 3, 4, 5, 6, 7, 8, 9}}) {
    out.clear();
    for (double k = std::floor(lo); k <= std::ceil(hi); k += 1)
      for (double m : mantissas) {
        const double v = k + std::log10(m);
        if (v >= lo && v <= hi) out.push_back(v);
      }
    if (out.size() >= 3) return out;
  }
  return out.size() >= 2 ? out : ticks(lo, hi, 6);
}

}  // namespace

std::string render_svg_plot(const std::vector<PlotSeries>& series, const PlotOptions& o) {
  auto ty = [&](double y) { return o.log_y ? (y > 0 ? std::log10(y) : NAN) : y; };
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (const auto& s : series)
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      const double y = ty(s.y[i]);
      if (!std::isfinite(s.x[i]) || !std::isfinite(y)) continue;
      x0 = std::min(x0, s.x[i]); x1 = std::max(x1, s.x[i]);
      y0 = std::min(y0, y); y1 = std::max(y1, y);
    }
  if (!(x0 <= x1)) { x0 = 0; x1 = 1; y0 = 0; y1 = 1; }
  if (x1 - x0 < 1e-12) { x0 -= 0.5; x1 += 0.5; }
  if (y1 - y0 < 1e-12) { y0 -= 0.5; y1 += 0.5; }
  const double pad = 0.05 * (y1 - y0);
  y0 -= pad; y1 += pad;

  const double L = 70, R = 20 + 170, T = 40, B = 55;  // margins; the legend sits on the right
  const double W = o.width - L - R, H = o.height - T - B;
  auto px = [&](double x) { return L + (x - x0) / (x1 - x0) * W; };
  auto py = [&](double y) { return T + (1.0 - (y - y0) / (y1 - y0)) * H; };

  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << o.width << "\" height=\""
      << o.height << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
      << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      << "<text x=\"12\" y=\"22\" font-size=\"14\">"
      << xml_escape(o.title) << "</text>\n";
  for (double v : ticks(x0, x1, 8)) {
    svg << "<line x1=\"" << px(v) << "\" x2=\"" << px(v) << "\" y1=\"" << T << "\" y2=\"" << T + H
        << "\" stroke=\"#e5e5e5\"/>\n<text x=\"" << px(v) << "\" y=\"" << T + H + 18
        << "\" text-anchor=\"middle\">" << num(v) << "</text>\n";
  }
  for (double v : o.log_y ? log_ticks(y0, y1) : ticks(y0, y1, 6)) {
    svg << "<line x1=\"" << L << "\" x2=\"" << L + W << "\" y1=\"" << py(v) << "\" y2=\"" << py(v)
        << "\" stroke=\"#e5e5e5\"/>\n<text x=\"" << L - 6 << "\" y=\"" << py(v) + 4
        << "\" text-anchor=\"end\">" << (o.log_y ? num(std::pow(10.0, v)) : num(v)) << "</text>\n";
  }
  svg << "<rect x=\"" << L << "\" y=\"" << T << "\" width=\"" << W << "\" height=\"" << H
      << "\" fill=\"none\" stroke=\"#333\"/>\n"
      << "<text x=\"" << L + W / 2 << "\" y=\"" << o.height - 14 << "\" text-anchor=\"middle\">"
      << xml_escape(o.x_label) << "</text>\n"
      << "<text transform=\"translate(18," << T + H / 2 << ") rotate(-90)\" text-anchor=\"middle\">"
      << xml_escape(o.y_label) << "</text>\n";

  for (size_t k = 0; k < series.size(); ++k) {
    const auto& s = series[k];
    const char* color = kPalette[k % (sizeof kPalette / sizeof *kPalette)];
    std::ostringstream path;
    bool pen_down = false;
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      const double y = ty(s.y[i]);
      if (!std::isfinite(s.x[i]) || !std::isfinite(y)) { pen_down = false; continue; }
      path << (pen_down ? " L" : " M") << px(s.x[i]) << "," << py(y);
      pen_down = true;
    }
    svg << "<path d=\"" << path.str() << "\" fill=\"none\" stroke=\"" << color
        << "\" stroke-width=\"2\"" << (s.dashed ? " stroke-dasharray=\"6,4\"" : "") << "/>\n";
    const double ly = T + 10 + 20 * double(k), lx = L + W + 15;
    svg << "<line x1=\"" << lx << "\" x2=\"" << lx + 24 << "\" y1=\"" << ly << "\" y2=\"" << ly
        << "\" stroke=\"" << color << "\" stroke-width=\"2\""
        << (s.dashed ? " stroke-dasharray=\"6,4\"" : "") << "/>\n<text x=\"" << lx + 30
        << "\" y=\"" << ly + 4 << "\">" << xml_escape(s.label) << "</text>\n";
  }
  svg << "</svg>\n";
  return svg.str();
}

std::string render_svg_bars(const std::vector<BarItem>& bars, const PlotOptions& o) {
  double y1 = 0;
  for (const auto& b : bars)
    if (std::isfinite(b.value)) y1 = std::max(y1, b.value);
  if (y1 <= 0) y1 = 1;
  y1 *= 1.12;  // room for the value printed on top
  const double L = 70, R = 20, T = 40, B = 110;  // labels are written slanted under the bars
  const double W = o.width - L - R, H = o.height - T - B;
  const double slot = W / double(std::max<size_t>(1, bars.size()));
  auto py = [&](double y) { return T + (1.0 - y / y1) * H; };

  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << o.width << "\" height=\""
      << o.height << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
      << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      << "<text x=\"12\" y=\"22\" font-size=\"14\">" << xml_escape(o.title) << "</text>\n";
  for (double v : ticks(0, y1, 6))
    svg << "<line x1=\"" << L << "\" x2=\"" << L + W << "\" y1=\"" << py(v) << "\" y2=\"" << py(v)
        << "\" stroke=\"#e5e5e5\"/>\n<text x=\"" << L - 6 << "\" y=\"" << py(v) + 4
        << "\" text-anchor=\"end\">" << num(v) << "</text>\n";
  svg << "<rect x=\"" << L << "\" y=\"" << T << "\" width=\"" << W << "\" height=\"" << H
      << "\" fill=\"none\" stroke=\"#333\"/>\n"
      << "<text transform=\"translate(18," << T + H / 2 << ") rotate(-90)\" text-anchor=\"middle\">"
      << xml_escape(o.y_label) << "</text>\n";
  for (size_t k = 0; k < bars.size(); ++k) {
    const auto& b = bars[k];
    const double cx = L + slot * (double(k) + 0.5), bw = std::min(60.0, slot * 0.6);
    if (std::isfinite(b.value)) {
      svg << "<rect x=\"" << cx - bw / 2 << "\" y=\"" << py(b.value) << "\" width=\"" << bw
          << "\" height=\"" << T + H - py(b.value) << "\" fill=\""
          << kPalette[k % (sizeof kPalette / sizeof *kPalette)] << "\"/>\n<text x=\"" << cx << "\" y=\""
          << py(b.value) - 4 << "\" text-anchor=\"middle\">" << num(b.value) << "</text>\n";
    } else {
      svg << "<text x=\"" << cx << "\" y=\"" << T + H - 8 << "\" text-anchor=\"middle\" fill=\"#b00\">"
          << xml_escape(b.note.empty() ? "missing" : b.note) << "</text>\n";
    }
    svg << "<text transform=\"translate(" << cx << "," << T + H + 14 << ") rotate(30)\">"
        << xml_escape(b.label) << "</text>\n";
  }
  svg << "</svg>\n";
  return svg.str();
}

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

}  // namespace vdm
