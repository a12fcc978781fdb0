// Plain double-precision reference implementations of the layers, written
// for clarity, not speed: the yardstick for every backend op.
#pragma once

#include <vector>

#include "tessera/model.hpp"
#include "tessera/tensor.hpp"

namespace tessera::testing {

// All planar C x H x W.
std::vector<double> reference_conv_relu(const std::vector<double>& input, Shape in, const std::vector<float>& weight,
                                        const std::vector<float>& bias, int out_channels, int kernel, int stride,
                                        int pad, Shape& out);
// Gradient with respect to the input of sum(upstream * relu(conv(input))).
std::vector<double> reference_conv_relu_backward(const std::vector<double>& output, Shape out,
                                                 const std::vector<double>& upstream,
                                                 const std::vector<float>& weight, Shape in, int kernel,
                                                 int stride, int pad);
std::vector<double> reference_pool(const std::vector<double>& input, Shape in, Pooling pooling, int kernel,
                                   int stride, bool ceil_mode, Shape& out);
std::vector<double> reference_pool_backward(const std::vector<double>& input, Shape in, Pooling pooling,
                                            int kernel, int stride, bool ceil_mode,
                                            const std::vector<double>& upstream);

}  // namespace tessera::testing
