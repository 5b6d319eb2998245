// Axes, nice ticks and a legend with GD's built-in small font; curves as 2-pixel polylines.
#include "train/plot.h"

#include <gd.h>
#include <gdfonts.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>

#include "core/check.h"

namespace dsv4 {

namespace {

// Tick positions: a "nice" step (1, 2 or 5 times a power of ten) giving about n ticks.
std::vector<double> ticks(double lo, double hi, int n) {
  const double raw = (hi - lo) / n, mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double step = raw / mag < 1.5 ? mag : raw / mag < 3.5 ? 2 * mag : raw / mag < 7.5 ? 5 * mag : 10 * mag;
  std::vector<double> t;
  for (double v = std::ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) t.push_back(std::fabs(v) < step * 1e-9 ? 0 : v);
  return t;
}

std::string label(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

void text(gdImagePtr im, int x, int y, const std::string& s, int color) {
  gdImageString(im, gdFontGetSmall(), x, y, reinterpret_cast<unsigned char*>(const_cast<char*>(s.c_str())), color);
}

}  // namespace

void write_line_plot_png(const std::string& path, const std::vector<PlotSeries>& series, const PlotOptions& o) {
  DSV4_CHECK(!series.empty(), path, ": nothing to plot");
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (const PlotSeries& s : series) {
    DSV4_CHECK(!s.x.empty() && s.x.size() == s.y.size(), path, ": series '", s.name, "' has ", s.x.size(),
               " x values and ", s.y.size(), " y values");
    for (size_t i = 0; i < s.x.size(); ++i) {
      DSV4_CHECK(std::isfinite(s.x[i]) && std::isfinite(s.y[i]), path, ": series '", s.name, "' has a non-finite value");
      DSV4_CHECK(!o.log_y || s.y[i] > 0, path, ": series '", s.name, "' has y <= 0 on a log axis");
      const double y = o.log_y ? std::log10(s.y[i]) : s.y[i];
      x0 = std::min(x0, s.x[i]), x1 = std::max(x1, s.x[i]), y0 = std::min(y0, y), y1 = std::max(y1, y);
    }
  }
  if (x1 == x0) x1 = x0 + 1;
  if (y1 == y0) y1 = y0 + 1;
  const double pad = 0.05 * (y1 - y0);
  y0 -= pad, y1 += pad;

  const std::unique_ptr<gdImage, decltype(&gdImageDestroy)> img(gdImageCreateTrueColor(o.width, o.height),
                                                                 gdImageDestroy);
  gdImagePtr im = img.get();
  DSV4_CHECK(im, "cannot create a ", o.width, " x ", o.height, " image");
  const int white = gdTrueColor(255, 255, 255), black = gdTrueColor(0, 0, 0), grid = gdTrueColor(225, 225, 225);
  gdImageFilledRectangle(im, 0, 0, o.width - 1, o.height - 1, white);
  const int left = 70, right = o.width - 20, top = 40, bottom = o.height - 50;
  auto px = [&](double x) { return left + static_cast<int>((x - x0) / (x1 - x0) * (right - left)); };
  auto py = [&](double y) { return bottom - static_cast<int>((y - y0) / (y1 - y0) * (bottom - top)); };
  for (double t : ticks(x0, x1, 8)) {
    gdImageLine(im, px(t), top, px(t), bottom, grid);
    text(im, px(t) - 3 * static_cast<int>(label(t).size()), bottom + 6, label(t), black);
  }
  for (double t : ticks(y0, y1, 6)) {
    gdImageLine(im, left, py(t), right, py(t), grid);
    const std::string l = label(o.log_y ? std::pow(10.0, t) : t);
    text(im, left - 8 - 6 * static_cast<int>(l.size()), py(t) - 6, l, black);
  }
  gdImageRectangle(im, left, top, right, bottom, black);
  text(im, left, 12, o.title, black);
  text(im, (left + right) / 2 - 3 * static_cast<int>(o.x_label.size()), o.height - 22, o.x_label, black);
  gdImageStringUp(im, gdFontGetSmall(), 8, (top + bottom) / 2 + 3 * static_cast<int>(o.y_label.size()),
                  reinterpret_cast<unsigned char*>(const_cast<char*>(o.y_label.c_str())), black);
  gdImageSetThickness(im, 2);
  // The legend's right edge at the frame's, as wide as its longest name (6 px per character).
  size_t longest = 0;
  for (const PlotSeries& s : series) longest = std::max(longest, s.name.size());
  const int legend_x = right - 8 - 6 * static_cast<int>(longest) - 32;
  for (size_t k = 0; k < series.size(); ++k) {
    const PlotSeries& s = series[k];
    const int color = gdTrueColor((s.rgb >> 16) & 255, (s.rgb >> 8) & 255, s.rgb & 255);
    for (size_t i = 1; i < s.x.size(); ++i) {
      const double ya = o.log_y ? std::log10(s.y[i - 1]) : s.y[i - 1], yb = o.log_y ? std::log10(s.y[i]) : s.y[i];
      gdImageLine(im, px(s.x[i - 1]), py(ya), px(s.x[i]), py(yb), color);
    }
    const int ly = top + 10 + 16 * static_cast<int>(k);
    gdImageLine(im, legend_x, ly + 6, legend_x + 25, ly + 6, color);
    text(im, legend_x + 32, ly, s.name, black);
  }
  gdImageSetThickness(im, 1);
  FILE* f = std::fopen(path.c_str(), "wb");
  DSV4_CHECK(f, path, ": cannot open for writing");
  gdImagePng(im, f);
  const bool ok = std::fclose(f) == 0;
  DSV4_CHECK(ok, path, ": write failed");
}

}  // namespace dsv4
