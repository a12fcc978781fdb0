#include "tessera/objective.hpp"

#include <algorithm>
#include <numeric>

#include "tessera/error.hpp"

namespace tessera {
std::vector<std::string> ObjectiveSettings::layers() const {
  std::vector<std::string> all = content_layers;
  for (const auto& name : style_layers)
    if (std::find(all.begin(), all.end(), name) == all.end()) all.push_back(name);
  return all;
}

std::vector<double> normalised_blend_weights(std::size_t style_count, const std::vector<float>& blend_weights) {
  if (style_count == 0) fail("no style image given");
  if (blend_weights.size() != style_count)
    fail("got ", blend_weights.size(), " style blend weights for ", style_count, " style images");
  double total = 0.0;
  for (float w : blend_weights) {
    if (!(w >= 0.0f)) fail("style blend weights must be non-negative, got ", w);
    total += w;
  }
  if (!(total > 0.0)) fail("style blend weights sum to zero");
  std::vector<double> normalised;
  for (float w : blend_weights) normalised.push_back(w / total);
  return normalised;
}

}  // namespace tessera
