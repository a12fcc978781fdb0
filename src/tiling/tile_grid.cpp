#include <algorithm>
#include <charconv>

#include "tessera/backend.hpp"
#include "tessera/error.hpp"
#include "tessera/tiling.hpp"

namespace tessera {

namespace {

// Cut [0, length) into `parts` pieces whose inner boundaries are multiples of
// `stride`, as even as possible; the last piece takes the remainder.
std::vector<int> cut(int length, int parts, int stride, const char* axis) {
  int units = length / stride;  // whole blocks
  if (units < parts)
    fail("the image is too small for ", parts, " tiles ", axis, ": ", length, " px holds only ", units,
         " blocks of ", stride, " px");
  std::vector<int> bounds(parts + 1, 0);
  for (int k = 1; k < parts; ++k) bounds[k] = int((long long)units * k / parts) * stride;
  bounds[parts] = length;
  return bounds;
}

}  // namespace

TileGrid TileGrid::make(int width, int height, int rows, int columns, int stride, int halo, int block) {
  if (rows < 1 || columns < 1) fail("a tile grid needs at least 1x1 tiles, got ", rows, "x", columns);
  if (stride < 1 || halo < 0 || halo % stride != 0)
    fail("internal: halo ", halo, " must be a non-negative multiple of the stride ", stride);
  if (block < stride || block % stride != 0)
    fail("internal: block ", block, " must be a multiple of the stride ", stride);
  TileGrid grid;
  grid.width = width;
  grid.height = height;
  grid.rows = rows;
  grid.columns = columns;
  grid.stride = stride;
  grid.halo = halo;
  grid.block = block;
  auto ys = cut(height, rows, block, "down");
  auto xs = cut(width, columns, block, "across");
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < columns; ++c) {
      Tile tile;
      tile.index = r * columns + c;
      tile.row = r;
      tile.column = c;
      tile.owned = {xs[c], ys[r], xs[c + 1], ys[r + 1]};
      tile.grown = tile.owned.grow(halo).intersect(grid.image());
      grid.tiles.push_back(tile);
    }
  return grid;
}

std::vector<Box> TileGrid::blocks() const {
  std::vector<Box> all;
  const int across = std::max(1, width / block), down = std::max(1, height / block);
  for (int r = 0; r < down; ++r)
    for (int c = 0; c < across; ++c)
      all.push_back({c * block, r * block, c == across - 1 ? width : (c + 1) * block,
                     r == down - 1 ? height : (r + 1) * block});
  return all;
}

TileGrid TileGrid::for_layers(const Architecture& arch, const std::vector<std::string>& layers, int width, int height,
                             int rows, int columns, int halo_px) {
  const int stride = total_stride_for(arch, layers);
  return make(width, height, rows, columns, stride, render_halo_for(arch, layers, halo_px),
              reduction_block_for(width, height, stride));
}

std::pair<int, int> TileGrid::most_tiles(const Architecture& arch, const std::vector<std::string>& layers, int width,
                                         int height) {
  const int block = reduction_block_for(width, height, total_stride_for(arch, layers));
  return {std::max(1, height / block), std::max(1, width / block)};
}

int reduction_block_for(int width, int height, int stride) {
  int strides = std::min(width, height) / (4 * stride);
  return stride * std::clamp(strides, 1, std::max(1, 256 / stride));
}

int total_stride_for(const Architecture& arch, const std::vector<std::string>& layers) {
  int stride = 1;
  for (const auto& layer : layers) stride = std::max(stride, receptive_field(arch, layer).stride_px);
  return stride;
}

int halo_width_for(const Architecture& arch, const std::vector<std::string>& layers) {
  int stride = total_stride_for(arch, layers);
  int field = 1;
  for (const auto& layer : layers) field = std::max(field, receptive_field(arch, layer).size_px);
  return (field + stride - 1) / stride * stride;
}

int render_halo_for(const Architecture& arch, const std::vector<std::string>& layers, int requested_px) {
  if (requested_px < 0) return halo_width_for(arch, layers);
  const int stride = total_stride_for(arch, layers);
  return (requested_px + stride - 1) / stride * stride;
}

Box feature_window(const Box& box, const Box& grown, int stride, int whole_map_height, int whole_map_width,
                   int image_width, int image_height) {
  int x0 = std::min(box.x0 / stride, whole_map_width), y0 = std::min(box.y0 / stride, whole_map_height);
  int x1 = box.x1 == image_width ? whole_map_width : std::min(box.x1 / stride, whole_map_width);
  int y1 = box.y1 == image_height ? whole_map_height : std::min(box.y1 / stride, whole_map_height);
  return Box::at(x0 - grown.x0 / stride, y0 - grown.y0 / stride, x1 - x0, y1 - y0);
}

void parse_tile_grid(const std::string& text, int& rows, int& columns) {
  auto x = text.find('x');
  auto number = [&](std::string_view part, int& out) {
    auto [end, error] = std::from_chars(part.data(), part.data() + part.size(), out);
    return error == std::errc() && end == part.data() + part.size() && out >= 1 && out <= 4096;
  };
  if (x == std::string::npos || !number(std::string_view(text).substr(0, x), rows) ||
      !number(std::string_view(text).substr(x + 1), columns))
    fail("bad tile grid '", text, "': expected ROWSxCOLUMNS, such as 2x3");
}

}  // namespace tessera
