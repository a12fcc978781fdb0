// A host image: planar float RGB, the layout the backbone's input takes.
#pragma once

#include <cstddef>
#include <vector>

namespace tessera {

struct Image {
  int width = 0;
  int height = 0;
  // Planar: channel c of pixel (y, x) is pixels[(c * height + y) * width + x].
  // Values nominally in [0,1]; float inputs may exceed it and are kept as they are.
  std::vector<float> pixels;

  Image() = default;
  Image(int width_px, int height_px)
      : width(width_px), height(height_px), pixels(std::size_t(3) * width_px * height_px, 0.0f) {}

  std::size_t plane_size() const { return std::size_t(width) * height; }
  float& at(int c, int y, int x) { return pixels[(std::size_t(c) * height + y) * width + x]; }
  float at(int c, int y, int x) const { return pixels[(std::size_t(c) * height + y) * width + x]; }
};

}  // namespace tessera
