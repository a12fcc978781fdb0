#include "support/reference_ops.hpp"

#include <algorithm>
#include <limits>

namespace tessera::testing {
namespace {

int pool_output(int in, int kernel, int stride, bool ceil_mode) {
  if (!ceil_mode) return (in - kernel) / stride + 1;
  int out = (in - kernel + stride - 1) / stride + 1;
  if ((out - 1) * stride >= in) --out;
  return out;
}

}  // namespace

std::vector<double> reference_conv_relu(const std::vector<double>& input, Shape in, const std::vector<float>& weight,
                                        const std::vector<float>& bias, int out_channels, int kernel, int stride,
                                        int pad, Shape& out) {
  out = {out_channels, (in.height + 2 * pad - kernel) / stride + 1, (in.width + 2 * pad - kernel) / stride + 1};
  std::vector<double> result(out.elements());
  for (int o = 0; o < out_channels; ++o)
    for (int y = 0; y < out.height; ++y)
      for (int x = 0; x < out.width; ++x) {
        double sum = bias[o];
        for (int i = 0; i < in.channels; ++i)
          for (int ky = 0; ky < kernel; ++ky)
            for (int kx = 0; kx < kernel; ++kx) {
              int iy = y * stride - pad + ky, ix = x * stride - pad + kx;
              if (iy < 0 || ix < 0 || iy >= in.height || ix >= in.width) continue;
              sum += double(weight[((std::size_t(o) * in.channels + i) * kernel + ky) * kernel + kx]) *
                     input[(std::size_t(i) * in.height + iy) * in.width + ix];
            }
        result[(std::size_t(o) * out.height + y) * out.width + x] = std::max(0.0, sum);
      }
  return result;
}

std::vector<double> reference_conv_relu_backward(const std::vector<double>& output, Shape out,
                                                 const std::vector<double>& upstream,
                                                 const std::vector<float>& weight, Shape in, int kernel,
                                                 int stride, int pad) {
  std::vector<double> grad(in.elements(), 0.0);
  for (int o = 0; o < out.channels; ++o)
    for (int y = 0; y < out.height; ++y)
      for (int x = 0; x < out.width; ++x) {
        std::size_t q = (std::size_t(o) * out.height + y) * out.width + x;
        if (output[q] <= 0.0) continue;
        double g = upstream[q];
        for (int i = 0; i < in.channels; ++i)
          for (int ky = 0; ky < kernel; ++ky)
            for (int kx = 0; kx < kernel; ++kx) {
              int iy = y * stride - pad + ky, ix = x * stride - pad + kx;
              if (iy < 0 || ix < 0 || iy >= in.height || ix >= in.width) continue;
              grad[(std::size_t(i) * in.height + iy) * in.width + ix] +=
                  g * weight[((std::size_t(o) * in.channels + i) * kernel + ky) * kernel + kx];
            }
      }
  return grad;
}

std::vector<double> reference_pool(const std::vector<double>& input, Shape in, Pooling pooling, int kernel,
                                   int stride, bool ceil_mode, Shape& out) {
  out = {in.channels, pool_output(in.height, kernel, stride, ceil_mode),
         pool_output(in.width, kernel, stride, ceil_mode)};
  std::vector<double> result(out.elements());
  for (int c = 0; c < in.channels; ++c)
    for (int y = 0; y < out.height; ++y)
      for (int x = 0; x < out.width; ++x) {
        double best = -std::numeric_limits<double>::infinity(), sum = 0.0;
        int count = 0;
        for (int ky = 0; ky < kernel; ++ky)
          for (int kx = 0; kx < kernel; ++kx) {
            int iy = y * stride + ky, ix = x * stride + kx;
            if (iy >= in.height || ix >= in.width) continue;
            double v = input[(std::size_t(c) * in.height + iy) * in.width + ix];
            best = std::max(best, v);
            sum += v;
            ++count;
          }
        result[(std::size_t(c) * out.height + y) * out.width + x] = pooling == Pooling::max ? best : sum / count;
      }
  return result;
}

std::vector<double> reference_pool_backward(const std::vector<double>& input, Shape in, Pooling pooling,
                                            int kernel, int stride, bool ceil_mode,
                                            const std::vector<double>& upstream) {
  Shape out;
  reference_pool(input, in, pooling, kernel, stride, ceil_mode, out);
  std::vector<double> grad(in.elements(), 0.0);
  for (int c = 0; c < in.channels; ++c)
    for (int y = 0; y < out.height; ++y)
      for (int x = 0; x < out.width; ++x) {
        double g = upstream[(std::size_t(c) * out.height + y) * out.width + x];
        int best_index = -1, count = 0;
        double best = -std::numeric_limits<double>::infinity();
        for (int ky = 0; ky < kernel; ++ky)
          for (int kx = 0; kx < kernel; ++kx) {
            int iy = y * stride + ky, ix = x * stride + kx;
            if (iy >= in.height || ix >= in.width) continue;
            int index = int((std::size_t(c) * in.height + iy) * in.width + ix);
            if (input[index] > best) {
              best = input[index];
              best_index = index;
            }
            ++count;
          }
        if (pooling == Pooling::max) {
          grad[best_index] += g;
          continue;
        }
        for (int ky = 0; ky < kernel; ++ky)
          for (int kx = 0; kx < kernel; ++kx) {
            int iy = y * stride + ky, ix = x * stride + kx;
            if (iy >= in.height || ix >= in.width) continue;
            grad[(std::size_t(c) * in.height + iy) * in.width + ix] += g / count;
          }
      }
  return grad;
}

}  // namespace tessera::testing
