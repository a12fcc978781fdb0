// Every backend layer against the plain double-precision reference
// (tests/support/reference_ops), forward and backward; the reference's own
// backward is checked by central finite differences of its forward.
#include <gtest/gtest.h>

#include <cmath>

#include "support/golden.hpp"
#include "support/reference_ops.hpp"
#include "support/test_support.hpp"
#include "tessera/backend.hpp"

namespace tessera {
namespace {

using testing::max_relative_difference;

std::vector<float> to_float(const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); }
std::vector<double> to_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

// float32 outputs of sums over up to a few thousand terms against double.
constexpr double kTolerance = 2e-5;

struct ConvCase {
  const char* name;
  int in_channels, out_channels, kernel, stride, pad, height, width;
};

class ConvolutionLayerTest : public ::testing::TestWithParam<ConvCase> {};

TEST_P(ConvolutionLayerTest, ForwardAndBackwardMatchReference) {
  const ConvCase& p = GetParam();
  auto backend = make_backend("cpu");
  Shape in{p.in_channels, p.height, p.width};
  LayerSpec spec{LayerKind::conv, p.name, p.in_channels, p.out_channels, p.kernel, p.stride, p.pad, false};
  ConvWeights weights;
  weights.name = p.name;
  weights.out_channels = p.out_channels;
  weights.in_channels = p.in_channels;
  weights.kernel_h = weights.kernel_w = p.kernel;
  float a = std::sqrt(6.0f / float(p.in_channels * p.kernel * p.kernel));
  weights.weight = testing::uniform_vector(31, std::size_t(p.out_channels) * p.in_channels * p.kernel * p.kernel, -a, a);
  weights.bias = testing::uniform_vector(32, p.out_channels, -0.1f, 0.1f);
  auto input = testing::uniform_vector(33, in.elements(), -1.0f, 1.0f);

  // The first layer reads the planar image; later ones read features.
  for (Layout input_layout : {Layout::planar, Layout::features}) {
    SCOPED_TRACE(input_layout == Layout::planar ? "planar input" : "features input");
    auto layer = backend->plan_convolution(spec, weights, in, input_layout);
    Shape out_ref;
    auto expected = testing::reference_conv_relu(to_double(input), in, weights.weight, weights.bias,
                                                 p.out_channels, p.kernel, p.stride, p.pad, out_ref);
    ASSERT_EQ(layer->output_shape(), out_ref);

    Tensor x = backend->allocate(in, input_layout);
    backend->upload(input, x);
    Tensor y = backend->allocate(out_ref, Layout::features);
    layer->forward(x, y);
    std::vector<float> got(y.elements());
    backend->download(y, got);
    EXPECT_LT(max_relative_difference(got, to_float(expected)), kTolerance);

    auto upstream = testing::uniform_vector(34, out_ref.elements(), -1.0f, 1.0f);
    Tensor dy = backend->allocate(out_ref, Layout::features);
    backend->upload(upstream, dy);
    Tensor dx = backend->allocate(in, input_layout);
    layer->backward(y, dy, dx);
    std::vector<float> grad(dx.elements());
    backend->download(dx, grad);
    // Compare with the reference adjoint taken at the reference output, so
    // that both use the same ReLU mask.
    auto expected_grad = testing::reference_conv_relu_backward(expected, out_ref, to_double(upstream),
                                                               weights.weight, in, p.kernel, p.stride, p.pad);
    EXPECT_LT(max_relative_difference(grad, to_float(expected_grad)), kTolerance);
  }
}

TEST_P(ConvolutionLayerTest, ReferenceBackwardMatchesFiniteDifferences) {
  const ConvCase& p = GetParam();
  Shape in{p.in_channels, p.height, p.width};
  float a = std::sqrt(6.0f / float(p.in_channels * p.kernel * p.kernel));
  auto weight = testing::uniform_vector(31, std::size_t(p.out_channels) * p.in_channels * p.kernel * p.kernel, -a, a);
  auto bias = testing::uniform_vector(32, p.out_channels, -0.1f, 0.1f);
  auto input = to_double(testing::uniform_vector(33, in.elements(), -1.0f, 1.0f));
  Shape out;
  auto output = testing::reference_conv_relu(input, in, weight, bias, p.out_channels, p.kernel, p.stride, p.pad, out);
  auto upstream = to_double(testing::uniform_vector(34, out.elements(), -1.0f, 1.0f));
  auto grad = testing::reference_conv_relu_backward(output, out, upstream, weight, in, p.kernel, p.stride, p.pad);
  auto loss = [&](const std::vector<double>& x) {
    Shape o;
    auto y = testing::reference_conv_relu(x, in, weight, bias, p.out_channels, p.kernel, p.stride, p.pad, o);
    double sum = 0.0;
    for (std::size_t i = 0; i < y.size(); ++i) sum += y[i] * upstream[i];
    return sum;
  };
  const double h = 1e-6;
  for (std::size_t i = 0; i < input.size(); i += std::max<std::size_t>(1, input.size() / 17)) {
    auto plus = input, minus = input;
    plus[i] += h;
    minus[i] -= h;
    double fd = (loss(plus) - loss(minus)) / (2 * h);
    EXPECT_NEAR(grad[i], fd, 1e-6 * std::max(1.0, std::abs(fd))) << "input element " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Layers, ConvolutionLayerTest,
    ::testing::Values(ConvCase{"vgg_first", 3, 64, 3, 1, 1, 10, 12}, ConvCase{"vgg_mid", 64, 128, 3, 1, 1, 9, 7},
                      ConvCase{"vgg_128", 128, 128, 3, 1, 1, 20, 24}, ConvCase{"vgg_wide", 128, 256, 3, 1, 1, 10, 12},
                      ConvCase{"nin_conv1", 3, 96, 11, 4, 0, 31, 27}, ConvCase{"nin_cccp", 96, 96, 1, 1, 0, 5, 6},
                      ConvCase{"nin_conv2", 96, 256, 5, 1, 2, 6, 5}),
    [](const auto& info) { return std::string(info.param.name); });

struct PoolCase {
  const char* name;
  Pooling pooling;
  int kernel, stride;
  bool ceil_mode;
  int channels, height, width;
};

class PoolingLayerTest : public ::testing::TestWithParam<PoolCase> {};

TEST_P(PoolingLayerTest, ForwardAndBackwardMatchReference) {
  const PoolCase& p = GetParam();
  auto backend = make_backend("cpu");
  Shape in{p.channels, p.height, p.width};
  LayerSpec spec{LayerKind::max_pool, p.name, p.channels, p.channels, p.kernel, p.stride, 0, p.ceil_mode};
  auto layer = backend->plan_pooling(spec, p.pooling, in);
  auto input = testing::uniform_vector(41, in.elements(), -1.0f, 1.0f);
  Shape out_ref;
  auto expected = testing::reference_pool(to_double(input), in, p.pooling, p.kernel, p.stride, p.ceil_mode, out_ref);
  ASSERT_EQ(layer->output_shape(), out_ref);

  Tensor x = backend->allocate(in, Layout::features);
  backend->upload(input, x);
  Tensor y = backend->allocate(out_ref, Layout::features);
  layer->forward(x, y);
  std::vector<float> got(y.elements());
  backend->download(y, got);
  EXPECT_LT(max_relative_difference(got, to_float(expected)), 1e-6);

  auto upstream = testing::uniform_vector(42, out_ref.elements(), -1.0f, 1.0f);
  Tensor dy = backend->allocate(out_ref, Layout::features);
  backend->upload(upstream, dy);
  Tensor dx = backend->allocate(in, Layout::features);
  backend->fill(dx, 123.0f);  // backward must overwrite every element, dropped rows included
  layer->backward(dy, dx);
  std::vector<float> grad(dx.elements());
  backend->download(dx, grad);
  auto expected_grad = testing::reference_pool_backward(to_double(input), in, p.pooling, p.kernel, p.stride,
                                                        p.ceil_mode, to_double(upstream));
  EXPECT_LT(max_relative_difference(grad, to_float(expected_grad)), 1e-6);
}

INSTANTIATE_TEST_SUITE_P(
    Layers, PoolingLayerTest,
    ::testing::Values(PoolCase{"vgg_max_even", Pooling::max, 2, 2, false, 16, 8, 10},
                      PoolCase{"vgg_max_128", Pooling::max, 2, 2, false, 128, 20, 24},
                      PoolCase{"vgg_max_64", Pooling::max, 2, 2, false, 64, 40, 48},
                      PoolCase{"vgg_max_odd", Pooling::max, 2, 2, false, 16, 5, 7},
                      PoolCase{"vgg_avg_odd", Pooling::avg, 2, 2, false, 16, 5, 7},
                      PoolCase{"nin_max_ceil", Pooling::max, 3, 2, true, 16, 8, 11},
                      PoolCase{"nin_avg_ceil", Pooling::avg, 3, 2, true, 16, 8, 11}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace tessera
