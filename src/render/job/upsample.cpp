#include "render/job/upsample.hpp"

#include <algorithm>
#include <limits>

#include "tessera/box_copy.hpp"
#include "tessera/io/image_io.hpp"

namespace tessera::job {

std::vector<float> upsample_for_next_scale(Renderer& renderer, const RenderLayout& next, Communicator& communicator) {
  const TiledObjective& objective = renderer.objective();
  const int from_width = objective.grid().width, from_height = objective.grid().height;
  const int to_width = next.grid.width, to_height = next.grid.height;
  const int me = communicator.rank();
  const std::vector<float> local = renderer.local_image();

  // Each channel is clamped to the range it has over the whole image, as
  // io::resize_image does, so that the filters' ringing adds no new values.
  float low[3], high[3];
  const std::vector<Box> from_boxes = objective.tiled_image().owned_boxes();
  std::size_t at = 0;
  for (int c = 0; c < 3; ++c) {
    low[c] = std::numeric_limits<float>::infinity();
    high[c] = -std::numeric_limits<float>::infinity();
  }
  for (std::size_t b = 0; b < from_boxes.size(); ++b) {
    if (objective.ranks().rank_of(int(b)) != me) continue;
    const std::size_t plane = std::size_t(from_boxes[b].area());
    for (int c = 0; c < 3; ++c) {
      auto [lowest, highest] = std::minmax_element(local.begin() + at, local.begin() + at + plane);
      low[c] = std::min(low[c], *lowest);
      high[c] = std::max(high[c], *highest);
      at += plane;
    }
  }
  for (int c = 0; c < 3; ++c) {
    low[c] = float(-communicator.max(-double(low[c])));
    high[c] = float(communicator.max(double(high[c])));
  }

  std::vector<Box> windows;
  for (const Tile& tile : next.grid.tiles)
    windows.push_back(io::resize_source_window(tile.owned, from_width, from_height, to_width, to_height));
  const std::vector<float> window_values =
      copy_boxes(communicator, 3, from_boxes, objective.ranks(), local, windows, next.ranks);

  std::vector<float> result;
  const float* window = window_values.data();
  for (const Tile& tile : next.grid.tiles) {
    if (next.ranks.rank_of(tile.index) != me) continue;
    const Box& w = windows[tile.index];
    const std::size_t window_size = 3 * std::size_t(w.area());
    std::vector<float> part = io::resize_part(std::span<const float>(window, window_size), w, 3, from_width,
                                              from_height, to_width, to_height, tile.owned);
    window += window_size;
    const std::size_t plane = std::size_t(tile.owned.area());
    for (int c = 0; c < 3; ++c)
      for (std::size_t i = 0; i < plane; ++i) part[c * plane + i] = std::clamp(part[c * plane + i], low[c], high[c]);
    result.insert(result.end(), part.begin(), part.end());
  }
  return result;
}

}  // namespace tessera::job
