// The one rectangle type: a tile's pixels in the image, a window of a
// feature map in that map's own coordinates, a part of a resized image.
#pragma once

#include <string>

// Box is read in CUDA kernels too (the windows of loss terms).
#ifdef __CUDACC__
#define TESSERA_HOST_DEVICE __host__ __device__
#else
#define TESSERA_HOST_DEVICE
#endif

namespace tessera {

// Half-open box [x0, x1) x [y0, y1).
struct Box {
  int x0 = 0, y0 = 0, x1 = 0, y1 = 0;

  // The box of that size with its top-left corner at (x, y).
  static constexpr Box at(int x, int y, int width, int height) { return {x, y, x + width, y + height}; }
  TESSERA_HOST_DEVICE int width() const { return x1 - x0; }
  TESSERA_HOST_DEVICE int height() const { return y1 - y0; }
  TESSERA_HOST_DEVICE long long area() const { return empty() ? 0 : (long long)width() * height(); }
  TESSERA_HOST_DEVICE bool empty() const { return x1 <= x0 || y1 <= y0; }
  Box grow(int by) const { return {x0 - by, y0 - by, x1 + by, y1 + by}; }
  Box intersect(const Box& o) const;
  Box shift(int dx, int dy) const { return {x0 + dx, y0 + dy, x1 + dx, y1 + dy}; }
  bool contains(const Box& o) const { return o.x0 >= x0 && o.y0 >= y0 && o.x1 <= x1 && o.y1 <= y1; }
  bool operator==(const Box&) const = default;
  std::string describe() const;
};

}  // namespace tessera
