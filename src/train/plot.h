// Line plots as PNG (loss curves and the optimizer comparison), drawn with GD (libgd): axes
// with numeric ticks, one polyline per series, a legend.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dsv4 {

struct PlotSeries {
  std::string name;
  std::vector<double> x, y;
  uint32_t rgb = 0x1f77b4;  // 0xRRGGBB
};

struct PlotOptions {
  std::string title, x_label, y_label;
  int width = 900, height = 540;
  bool log_y = false;  // y on a log10 axis (values must be > 0)
};

// Throws Error naming the problem (no points, x and y of different lengths, a non-finite value,
// log_y with a value <= 0, a file that cannot be written).
void write_line_plot_png(const std::string& path, const std::vector<PlotSeries>& series, const PlotOptions& o);

}  // namespace dsv4
