#include <cmath>

#include "tessera/error.hpp"
#include "tessera/weights.hpp"

namespace tessera {

ColorTransform ColorTransform::identity() {
  ColorTransform t;
  for (int c = 0; c < 3; ++c) t.matrix[c][c] = 1.0f;
  return t;
}

ColorTransform ColorTransform::caffe() {
  // Caffe's VGG and NIN models take BGR in 0..255 with the ImageNet mean
  // (in BGR order) subtracted.
  ColorTransform t;
  t.matrix[0][2] = 255.0f;
  t.matrix[1][1] = 255.0f;
  t.matrix[2][0] = 255.0f;
  t.bias = {-103.939f, -116.779f, -123.68f};
  return t;
}

ColorTransform ColorTransform::torchvision() {
  const float mean[3] = {0.485f, 0.456f, 0.406f};
  const float stdev[3] = {0.229f, 0.224f, 0.225f};
  ColorTransform t;
  for (int c = 0; c < 3; ++c) {
    t.matrix[c][c] = 1.0f / stdev[c];
    t.bias[c] = -mean[c] / stdev[c];
  }
  return t;
}

ColorTransform ColorTransform::inverse() const {
  // 3x3 inverse by cofactors, in double: the matrices here are permutations
  // times a scale, so this is exact enough, but a general map must work too.
  double m[3][3];
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) m[r][c] = matrix[r][c];
  double det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) -
               m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]) +
               m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
  double scale = 0.0;
  for (auto& row : m)
    for (double v : row) scale = std::max(scale, std::abs(v));
  if (!(std::abs(det) > 1e-12 * scale * scale * scale))
    fail("the input colour transform is singular and cannot be inverted (determinant ", det, ")");
  double inv[3][3];
  inv[0][0] = (m[1][1] * m[2][2] - m[1][2] * m[2][1]) / det;
  inv[0][1] = (m[0][2] * m[2][1] - m[0][1] * m[2][2]) / det;
  inv[0][2] = (m[0][1] * m[1][2] - m[0][2] * m[1][1]) / det;
  inv[1][0] = (m[1][2] * m[2][0] - m[1][0] * m[2][2]) / det;
  inv[1][1] = (m[0][0] * m[2][2] - m[0][2] * m[2][0]) / det;
  inv[1][2] = (m[0][2] * m[1][0] - m[0][0] * m[1][2]) / det;
  inv[2][0] = (m[1][0] * m[2][1] - m[1][1] * m[2][0]) / det;
  inv[2][1] = (m[0][1] * m[2][0] - m[0][0] * m[2][1]) / det;
  inv[2][2] = (m[0][0] * m[1][1] - m[0][1] * m[1][0]) / det;
  ColorTransform t;
  for (int r = 0; r < 3; ++r) {
    double b = 0.0;
    for (int c = 0; c < 3; ++c) {
      t.matrix[r][c] = float(inv[r][c]);
      b -= inv[r][c] * bias[c];
    }
    t.bias[r] = float(b);
  }
  return t;
}

std::array<float, 3> ColorTransform::apply(std::array<float, 3> rgb) const {
  std::array<float, 3> out{};
  for (int r = 0; r < 3; ++r)
    out[r] = matrix[r][0] * rgb[0] + matrix[r][1] * rgb[1] + matrix[r][2] * rgb[2] + bias[r];
  return out;
}

}  // namespace tessera
