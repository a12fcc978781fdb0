#include "tessera/scales.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <sstream>

#include "tessera/error.hpp"

namespace tessera {
namespace {

int parse_positive(const std::string& text, const char* what) {
  int value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc() || end != text.data() + text.size() || value < 1)
    fail("--scales: '", text, "' is not a positive ", what);
  return value;
}

}  // namespace

std::vector<Scale> plan_scales(const std::string& spec, int width, int height, int iterations,
                               const std::vector<int>& per_scale) {
  if (width < 1 || height < 1) fail("internal: scales of a ", width, "x", height, " image");
  if (iterations < 1) fail("--iterations must be at least 1, got ", iterations);
  const int long_side = std::max(width, height);
  std::vector<int> sides;
  if (spec == "auto") {
    int count = 1;
    while (std::ldexp(double(long_side), -(count - 1)) > auto_coarsest_long_side) ++count;
    for (int k = count - 1; k >= 0; --k) sides.push_back(int(std::lround(std::ldexp(double(long_side), -k))));
  } else if (spec.find(',') == std::string::npos) {
    const int count = parse_positive(spec.empty() ? "1" : spec, "number of scales or list of sizes");
    // One number: a count of scales, or a single long side when it is too
    // large to be one (--scales 1024 renders 1024 px, then the output).
    if (count <= 16) {
      for (int k = count - 1; k >= 0; --k) sides.push_back(int(std::lround(std::ldexp(double(long_side), -k))));
    } else {
      sides.push_back(count);
    }
  } else {
    std::stringstream stream(spec);
    std::string part;
    while (std::getline(stream, part, ',')) sides.push_back(parse_positive(part, "long side in pixels"));
  }
  if (sides.back() < long_side) sides.push_back(long_side);
  for (std::size_t k = 0; k < sides.size(); ++k) {
    if (sides[k] > long_side)
      fail("--scales: ", sides[k], " px is larger than the output's long side (", long_side, " px)");
    if (k > 0 && sides[k] <= sides[k - 1]) fail("--scales: the long sides must increase, got ", spec);
    if (sides[k] < min_scale_long_side && sides.size() > 1)
      fail("--scales: scale ", k + 1, " would be ", sides[k], " px across, below the smallest useful (",
           min_scale_long_side, " px): use fewer scales");
  }
  if (!per_scale.empty() && per_scale.size() != sides.size())
    fail("--scale-iterations gives ", per_scale.size(), " counts for ", sides.size(), " scales");

  std::vector<Scale> scales;
  int count = iterations;
  for (std::size_t k = 0; k < sides.size(); ++k) {
    Scale scale;
    if (sides[k] == long_side) {
      scale.width = width;
      scale.height = height;
    } else {
      const double factor = double(sides[k]) / long_side;
      scale.width = std::max(1, int(std::lround(width * factor)));
      scale.height = std::max(1, int(std::lround(height * factor)));
    }
    if (!per_scale.empty()) {
      if (per_scale[k] < 1) fail("--scale-iterations: scale ", k + 1, " needs at least 1 iteration");
      scale.iterations = per_scale[k];
    } else {
      scale.iterations = count;
      count = std::max(1, count / 2);
    }
    scales.push_back(scale);
  }
  return scales;
}

}  // namespace tessera
