// The sweep report from plain data, no config file: each point's status from its run files,
// the lambda grid and w(lambda) curves from its objective, CSV/Markdown quoting and the HTML's
// four plots.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>

#include "report/svg_plot.h"
#include "report/sweep_report.h"
#include "tests/test_support.h"

namespace vdm {
namespace {

void write_report_file(const std::filesystem::path& path, const std::string& text) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

PointInput report_point(size_t index, const std::string& label, PointInput::Config state,
                        const std::string& weighting = "elbo", double bias = 0) {
  PointInput p;
  p.index = index;
  p.label = label;
  p.dir = std::to_string(index) + "_" + label;
  p.config_state = state;
  p.config.steps_total = 4;
  p.config.schedule.name = "linear";
  p.config.schedule.gamma_min = -10;
  p.config.schedule.gamma_max = 6;
  p.config.objective.name = "weighted";
  p.config.objective.weighting.name = weighting;
  p.config.objective.weighting.bias = bias;
  return p;
}

TEST(SweepReport, StatusesCurvesAndTables) {
  TempDir tmp;
  SweepInput in;
  in.name = "demo";
  in.dir = tmp.path.string();
  in.points = {report_point(0, "elbo", PointInput::Config::read),
               report_point(1, "sig", PointInput::Config::read, "sigmoid", 2),
               report_point(2, "gone", PointInput::Config::missing),
               report_point(3, "broken", PointInput::Config::bad)};
  in.points[3].label = "a,\"b\"";
  const auto run = tmp.path / in.points[0].dir;
  write_report_file(run / "metrics.jsonl", "{\"step\": 2, \"loss\": 0.5}\n{\"step\": 4, \"loss\": 0.25}\n");
  write_report_file(run / "eval.jsonl", "{\"step\": 4, \"bpd\": 3.5, \"bpd_stderr\": 0.01, \"weighting_monotone\": true, "
                                        "\"augmented_elbo_bpd\": 1.25, \"augmented_elbo_stderr\": 0.02}\n");
  const auto sig = tmp.path / in.points[1].dir;
  write_report_file(sig / "eval.jsonl", "{\"step\": 4, \"bpd\": 3.75, \"weighting_monotone\": false}\n");
  write_report_file(run / "attempts.jsonl", "{\"start\": 10, \"end\": 12.5, \"exit_code\": 0}\n");

  const SweepReport r = collect_sweep_report(in);
  ASSERT_EQ(r.points.size(), 4u);
  EXPECT_EQ(r.points[0].status, "done");
  EXPECT_EQ(r.points[0].objective, "elbo");
  EXPECT_EQ(r.points[0].steps_done, 4);
  EXPECT_EQ(r.points[0].losses, (std::vector<double>{0.5, 0.25}));
  EXPECT_DOUBLE_EQ(r.points[0].augmented_elbo, 1.25);
  EXPECT_FALSE(r.points[0].not_monotone);
  EXPECT_TRUE(r.points[1].not_monotone);
  EXPECT_EQ(r.points[1].status, "not started");
  EXPECT_EQ(r.points[1].objective, "sigmoid(b=2)");
  EXPECT_EQ(r.points[2].status, "missing");
  EXPECT_EQ(r.points[3].status, "bad config");

  // One grid over the read points' schedules: lambda from -gamma_max to -gamma_min.
  ASSERT_EQ(r.lambda_grid.size(), 241u);
  EXPECT_DOUBLE_EQ(r.lambda_grid.front(), -6);
  EXPECT_DOUBLE_EQ(r.lambda_grid.back(), 10);
  ASSERT_EQ(r.points[0].w.size(), 241u);
  for (double w : r.points[0].w) EXPECT_DOUBLE_EQ(w, 1);  // ELBO: w = 1
  ASSERT_EQ(r.points[1].w.size(), 241u);                  // sigmoid(2 - lambda): largest at the left
  EXPECT_DOUBLE_EQ(r.points[1].w.front(), 1);
  EXPECT_LT(r.points[1].w.back(), 1e-3);
  EXPECT_TRUE(r.points[2].w.empty());
  EXPECT_TRUE(r.points[3].w.empty());

  EXPECT_EQ(report_csv(r),
            "index,label,objective,status,steps,final_loss,test_bpd,test_bpd_stderr,weighting_monotone,"
            "augmented_elbo_bpd,augmented_elbo_stderr,fid,run_time_s\n"
            "0,elbo,elbo,done,4,0.25,3.5,0.01,true,1.25,0.02,,2.5\n"
            "1,sig,sigmoid(b=2),not started,,,3.75,,false,,,,\n"
            "2,gone,,missing,,,,,,,,,\n"
            "3,\"a,\"\"b\"\"\",,bad config,,,,,,,,,\n");
  const std::string md = report_markdown(r);
  EXPECT_NE(md.find("| 0 | elbo | elbo | done | 4/4 | 0.25 | 3.5000 ± 0.0100 | 1.2500 ± 0.0200 | — | 2 |"),
            std::string::npos) << md;
  EXPECT_NE(md.find("| not monotone |"), std::string::npos) << md;
  const std::string html = report_html(r);
  size_t plots = 0;
  for (size_t at = html.find("<svg"); at != std::string::npos; at = html.find("<svg", at + 1)) ++plots;
  EXPECT_EQ(plots, 5u);
  EXPECT_NE(html.find("a,&quot;b&quot;"), std::string::npos);
}

TEST(SvgPlot, EscapesAndDrawsEverySeries) {
  EXPECT_EQ(xml_escape("a<b & \"c\">"), "a&lt;b &amp; &quot;c&quot;&gt;");
  PlotOptions o;
  o.title = "t";
  const std::string svg = render_svg_plot({{"one", {0, 1}, {1, 2}, false}, {"two", {0, 1}, {2, 1}, true}}, o);
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find(">one<"), std::string::npos);
  EXPECT_NE(svg.find(">two<"), std::string::npos);
}

}  // namespace
}  // namespace vdm
