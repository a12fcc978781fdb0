// The CUDA backend against the CPU backend (the reference): every op, the
// whole loss and gradient, and tiled-equals-whole on one GPU, on fresh
// random inputs each run (the seed is printed, to replay a failure with
// TESSERA_CUDA_TEST_SEED). Every test skips, saying why, on a machine
// without a GPU; CI builds them and sees the skips.
//
// Tolerances. f32: 1e-4 of the largest reference value (the CPU and cuDNN
// sum products in different orders; cuDNN runs with FMA math, no TF32).
// bf16 ops: both backends store 8 significant bits (a relative rounding of
// 2^-9) but round at different points (cuDNN rounds the convolution before
// the bias, oneDNN after), so one rounding step either way is allowed:
// 2^-7 = 7.8e-3 of the largest value. bf16 loss and gradient: the bounds of
// test_bf16.cpp (CPU bf16 against CPU f32), since the GPU's bf16 is held to
// the f32 reference the same way.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>

#include "support/golden.hpp"
#include "support/render_cases.hpp"
#include "support/test_support.hpp"
#include "support/whole_objective.hpp"
#include "tessera/backend.hpp"
#include "tessera/error.hpp"
#include "tessera/objective.hpp"
#include "tessera/render.hpp"

namespace tessera {

// Test names and messages print the precision by name (found by ADL).
void PrintTo(Precision precision, std::ostream* os) { *os << precision_name(precision); }

namespace {

using testing::uniform_vector;

constexpr double kF32Tolerance = 1e-4;
constexpr double kBf16OpTolerance = 1.0 / 128;

// A GPU backend, or the reason there is none (never an exception: a
// machine without a driver reports cudaErrorInsufficientDriver).
std::unique_ptr<Backend> cuda_backend(std::string& why_not) {
  try {
    return make_backend("cuda");
  } catch (const Error& e) {
    why_not = e.what();
    return nullptr;
  }
}

#define SKIP_WITHOUT_GPU(backend)                                                                      \
  std::string why_no_gpu_;                                                                             \
  auto backend = cuda_backend(why_no_gpu_);                                                            \
  if (!backend) GTEST_SKIP() << "no CUDA GPU here, so the CUDA backend is not tested: " << why_no_gpu_

std::uint64_t fresh_seed() {
  if (const char* fixed = std::getenv("TESSERA_CUDA_TEST_SEED")) return std::strtoull(fixed, nullptr, 10);
  static const std::uint64_t seed = [] {
    std::uint64_t s = (std::uint64_t(std::random_device{}()) << 32) ^ std::random_device{}();
    std::printf("CUDA backend tests: seed %llu (TESSERA_CUDA_TEST_SEED=%llu replays it)\n", (unsigned long long)s,
                (unsigned long long)s);
    return s;
  }();
  return seed;
}

// Largest difference over the largest reference value: a scale-free
// measure that ignores relative noise on values near zero.
double relative_to_max(const std::vector<float>& got, const std::vector<float>& expected) {
  EXPECT_EQ(got.size(), expected.size());
  if (got.size() != expected.size()) return INFINITY;
  double worst = 0.0, largest = 0.0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    worst = std::max(worst, std::abs(double(got[i]) - expected[i]));
    largest = std::max(largest, std::abs(double(expected[i])));
  }
  return largest > 0.0 ? worst / largest : worst;
}

double relative(double got, double expected) {
  return expected == 0.0 ? std::abs(got) : std::abs(got - expected) / std::abs(expected);
}

// The same operation on both backends: inputs go up from the host, results
// come back down to compare.
class CudaAgainstCpu : public ::testing::TestWithParam<Precision> {
 protected:
  void SetUp() override {
    gpu = cuda_backend(why_no_gpu);
    if (!gpu) GTEST_SKIP() << "no CUDA GPU here, so the CUDA backend is not tested: " << why_no_gpu;
    cpu = make_backend("cpu");
    if (GetParam() == Precision::bf16) {
      try {
        cpu->set_precision(Precision::bf16);
      } catch (const Error& e) {
        GTEST_SKIP() << "the CPU reference has no bf16 here: " << e.what();
      }
    }
    gpu->set_precision(GetParam());
    seed = fresh_seed();
  }

  double tolerance() const { return GetParam() == Precision::bf16 ? kBf16OpTolerance : kF32Tolerance; }

  static Tensor make(Backend& backend, Shape shape, Layout layout, const std::vector<float>& planar_values) {
    Tensor t = backend.allocate(shape, layout);
    backend.upload(planar_values, t);
    return t;
  }
  static std::vector<float> get(Backend& backend, const Tensor& t) {
    std::vector<float> host(t.elements());
    backend.download(t, host);
    return host;
  }
  std::vector<float> random(std::size_t count, float lo = -1.0f, float hi = 1.0f) {
    return uniform_vector(seed + counter++, count, lo, hi);
  }
  // Planar values, within each channel a random permutation of distinct
  // multiples of 1/64 below 4 (exact in bf16 too): a max-pooling window
  // never holds a tie, which the backends may break differently, routing a
  // gradient to different elements.
  std::vector<float> distinct_per_channel(Shape shape) {
    if (shape.plane() > 256) ADD_FAILURE() << "too many positions for distinct bf16 values";
    std::vector<float> values(shape.elements());
    std::mt19937_64 generator(seed + counter++);
    std::vector<int> order(shape.plane());
    for (int c = 0; c < shape.channels; ++c) {
      for (std::size_t i = 0; i < order.size(); ++i) order[i] = int(i);
      std::shuffle(order.begin(), order.end(), generator);
      for (std::size_t i = 0; i < order.size(); ++i) values[c * shape.plane() + i] = (order[i] - 128) / 64.0f;
    }
    return values;
  }

  std::string why_no_gpu;
  std::unique_ptr<Backend> gpu, cpu;
  std::uint64_t seed = 0, counter = 0;
};

TEST_P(CudaAgainstCpu, FeaturesLayoutRoundTrips) {
  for (Shape shape : {Shape{3, 5, 7}, Shape{17, 3, 11}, Shape{1, 1, 1}, Shape{64, 2, 3}}) {
    SCOPED_TRACE(shape.describe());
    auto values = random(shape.elements(), -10.0f, 10.0f);
    Tensor features = make(*gpu, shape, Layout::features, values);
    Tensor planar = gpu->allocate(shape, Layout::planar);
    gpu->convert(features, planar);
    auto expected = get(*cpu, make(*cpu, shape, Layout::features, values));  // the same rounding in bf16
    EXPECT_EQ(get(*gpu, features), expected);
    EXPECT_EQ(get(*gpu, planar), expected);
  }
}

struct ConvCase {
  const char* name;
  int in, out, kernel, stride, pad, height, width;
  Layout input_layout;
};

TEST_P(CudaAgainstCpu, ConvolutionForwardAndBackwardAgree) {
  for (const ConvCase& c : {ConvCase{"first 3x3 (planar input)", 3, 16, 3, 1, 1, 19, 23, Layout::planar},
                            ConvCase{"3x3", 16, 32, 3, 1, 1, 13, 17, Layout::features},
                            ConvCase{"NIN conv1 11x11/4", 3, 24, 11, 4, 0, 35, 41, Layout::planar},
                            ConvCase{"5x5 pad 2", 8, 16, 5, 1, 2, 12, 9, Layout::features},
                            ConvCase{"1x1", 32, 24, 1, 1, 0, 7, 10, Layout::features}}) {
    SCOPED_TRACE(c.name);
    LayerSpec spec{LayerKind::conv, "conv", c.in, c.out, c.kernel, c.stride, c.pad, false};
    ConvWeights weights{"conv", c.out, c.in, c.kernel, c.kernel, {}, {}};
    const float bound = 1.0f / std::sqrt(float(c.in * c.kernel * c.kernel));
    weights.weight = random(std::size_t(c.out) * c.in * c.kernel * c.kernel, -bound, bound);
    weights.bias = random(c.out, -0.2f, 0.2f);  // some outputs negative: the ReLU must cut
    Shape input{c.in, c.height, c.width};
    auto input_values = random(input.elements());
    std::vector<float> results[2][3];  // [backend][output, masked grad_output, grad_input]
    Backend* backends[2] = {cpu.get(), gpu.get()};
    Shape output{};
    std::vector<float> grad_values;
    for (int b = 0; b < 2; ++b) {
      Backend& backend = *backends[b];
      auto layer = backend.plan_convolution(spec, weights, input, c.input_layout);
      output = layer->output_shape();
      if (grad_values.empty()) grad_values = random(output.elements());
      Tensor x = make(backend, input, c.input_layout, input_values);
      Tensor y = backend.allocate(output, Layout::features);
      layer->forward(x, y);
      results[b][0] = get(backend, y);
      // Backward from the CPU's output on both: an output within rounding
      // of zero would otherwise flip the ReLU mask on one side only (often,
      // in bf16) and move a whole gradient value.
      Tensor reference_y = make(backend, output, Layout::features, results[0][0]);
      Tensor grad_y = make(backend, output, Layout::features, grad_values);
      Tensor grad_x = backend.allocate(input, c.input_layout);
      backend.fill(grad_x, 7.0f);  // overwritten, not added to
      layer->backward(reference_y, grad_y, grad_x);
      results[b][1] = get(backend, grad_y);
      results[b][2] = get(backend, grad_x);
    }
    EXPECT_EQ(gpu->plan_convolution(spec, weights, input, c.input_layout)->output_shape(), output);
    EXPECT_LT(relative_to_max(results[1][0], results[0][0]), tolerance()) << "forward";
    EXPECT_EQ(results[1][1], results[0][1]) << "ReLU mask on grad_output";
    EXPECT_LT(relative_to_max(results[1][2], results[0][2]), tolerance()) << "backward to the input";
  }
}

TEST_P(CudaAgainstCpu, PoolingForwardAndBackwardAgree) {
  struct PoolCase {
    int kernel, stride, pad;
    bool ceil;
    int height, width;
  };
  // cuDNN pools where its (floor) output size is the one asked for, our
  // kernels elsewhere (ceil) or when cuDNN lacks the configuration; the
  // environment variable makes the GPU use its own kernels everywhere, so
  // that both paths are compared with the CPU on every case.
  for (bool own_kernels : {false, true})
  for (Pooling pooling : {Pooling::max, Pooling::avg})
    for (const PoolCase& c : {PoolCase{2, 2, 0, false, 10, 14}, PoolCase{2, 2, 0, false, 9, 11},
                              PoolCase{3, 2, 0, true, 13, 13}, PoolCase{3, 2, 0, true, 14, 16},
                              PoolCase{3, 1, 1, false, 8, 9}}) {
      if (own_kernels)
        setenv("TESSERA_CUDA_OWN_POOLING", "1", 1);
      else
        unsetenv("TESSERA_CUDA_OWN_POOLING");
      SCOPED_TRACE(std::string(own_kernels ? "own kernels, " : "") + (pooling == Pooling::max ? "max " : "avg ") +
                   std::to_string(c.kernel) + "x" +
                   std::to_string(c.kernel) + "/" + std::to_string(c.stride) + (c.ceil ? " ceil " : " floor ") +
                   std::to_string(c.height) + "x" + std::to_string(c.width));
      LayerSpec spec{pooling == Pooling::max ? LayerKind::max_pool : LayerKind::avg_pool, "pool", 0, 0,
                     c.kernel, c.stride, c.pad, c.ceil};
      Shape input{24, c.height, c.width};
      auto input_values = distinct_per_channel(input);
      std::vector<float> results[2][2];
      Backend* backends[2] = {cpu.get(), gpu.get()};
      std::vector<float> grad_values;
      for (int b = 0; b < 2; ++b) {
        Backend& backend = *backends[b];
        auto layer = backend.plan_pooling(spec, pooling, input);
        Shape output = layer->output_shape();
        if (grad_values.empty()) grad_values = random(output.elements());
        Tensor x = make(backend, input, Layout::features, input_values);
        Tensor y = backend.allocate(output, Layout::features);
        layer->forward(x, y);
        Tensor grad_y = make(backend, output, Layout::features, grad_values);
        Tensor grad_x = backend.allocate(input, Layout::features);
        backend.fill(grad_x, 7.0f);
        layer->backward(grad_y, grad_x);
        results[b][0] = get(backend, y);
        results[b][1] = get(backend, grad_x);
      }
      EXPECT_LT(relative_to_max(results[1][0], results[0][0]), tolerance()) << "forward";
      EXPECT_LT(relative_to_max(results[1][1], results[0][1]), tolerance()) << "backward";
    }
  unsetenv("TESSERA_CUDA_OWN_POOLING");
}

TEST_P(CudaAgainstCpu, GramForwardContiguousAndBackwardAgree) {
  const Shape shape{48, 13, 17};
  auto feature_values = random(shape.elements(), 0.0f, 2.0f);
  auto d_values = random(std::size_t(shape.channels) * shape.channels);
  for (std::size_t i = 0; i < std::size_t(shape.channels); ++i)  // D symmetric
    for (std::size_t j = 0; j < i; ++j) d_values[i * shape.channels + j] = d_values[j * shape.channels + i];
  const Shape square{1, shape.channels, shape.channels};
  for (Box window : {whole_map(shape), Box::at(0, 0, shape.width, 5), Box::at(2, 3, 9, 7)}) {
    SCOPED_TRACE("window " + std::to_string(window.x0) + "," + std::to_string(window.y0) + " " +
                 std::to_string(window.width()) + "x" + std::to_string(window.height()));
    const float scale = 1.0f / float(shape.channels * window.area());
    std::vector<float> results[2][3];  // gram, contiguous gram, grad_features
    Backend* backends[2] = {cpu.get(), gpu.get()};
    std::vector<float> grad_start = random(shape.elements());
    for (int b = 0; b < 2; ++b) {
      Backend& backend = *backends[b];
      auto gram_op = backend.plan_gram(shape);
      Tensor f = make(backend, shape, Layout::features, feature_values);
      Tensor gram = backend.allocate(square, Layout::planar), contiguous = backend.allocate(square, Layout::planar);
      backend.fill(gram, 5.0f);  // overwritten
      gram_op->forward(f, window, scale, gram);
      gram_op->forward_contiguous(f, window, scale, contiguous);
      Tensor d = make(backend, square, Layout::planar, d_values);
      Tensor grad = make(backend, shape, Layout::features, grad_start);
      gram_op->backward(f, window, d, 0.5f, grad);
      results[b][0] = get(backend, gram);
      results[b][1] = get(backend, contiguous);
      results[b][2] = get(backend, grad);
    }
    EXPECT_LT(relative_to_max(results[1][0], results[0][0]), tolerance()) << "forward";
    EXPECT_LT(relative_to_max(results[1][1], results[0][1]), tolerance()) << "forward_contiguous";
    EXPECT_LT(relative_to_max(results[1][2], results[0][2]), tolerance()) << "backward";
    // Outside the window the gradient is untouched: the same bits as before.
    auto untouched = get(*cpu, make(*cpu, shape, Layout::features, grad_start));
    for (int y = 0; y < shape.height; ++y)
      for (int x = 0; x < shape.width; ++x) {
        bool inside = y >= window.y0 && y < window.y0 + window.height() && x >= window.x0 && x < window.x0 + window.width();
        if (inside) continue;
        for (int c = 0; c < shape.channels; ++c) {
          std::size_t i = (std::size_t(c) * shape.height + y) * shape.width + x;
          ASSERT_EQ(results[1][2][i], untouched[i]) << "outside the window at " << c << "," << y << "," << x;
        }
      }
  }
}

TEST_P(CudaAgainstCpu, SquaredDistanceInEitherLayout) {
  const Shape shape{21, 11, 13};
  auto a_values = random(shape.elements()), b_values = random(shape.elements()), g_values = random(shape.elements());
  for (Layout layout : {Layout::planar, Layout::features})
    for (Box window : {whole_map(shape), Box::at(3, 2, 5, 6)}) {
      SCOPED_TRACE(layout == Layout::planar ? "planar" : "features");
      double sums[2];
      std::vector<float> grads[2];
      Backend* backends[2] = {cpu.get(), gpu.get()};
      for (int b = 0; b < 2; ++b) {
        Backend& backend = *backends[b];
        Tensor a = make(backend, shape, layout, a_values), bt = make(backend, shape, layout, b_values);
        Tensor g = make(backend, shape, layout, g_values);
        sums[b] = backend.squared_distance(a, bt, window, 0.25f, &g);
        EXPECT_EQ(backend.squared_distance(a, bt, window, 1.0f, nullptr), sums[b]);  // no gradient: same value
        grads[b] = get(backend, g);
      }
      EXPECT_LT(relative(sums[1], sums[0]), layout == Layout::planar ? 1e-10 : tolerance());
      EXPECT_LT(relative_to_max(grads[1], grads[0]), layout == Layout::planar ? kF32Tolerance : tolerance());
    }
}

TEST_P(CudaAgainstCpu, TotalVariationAndCopyWindow) {
  const Shape shape{3, 17, 23};
  auto x_values = random(shape.elements(), -50.0f, 50.0f), g_values = random(shape.elements());
  for (Box counted : {whole_map(shape), Box::at(5, 4, 7, 9)}) {
    double values[2];
    std::vector<float> grads[2], copies[2];
    Backend* backends[2] = {cpu.get(), gpu.get()};
    for (int b = 0; b < 2; ++b) {
      Backend& backend = *backends[b];
      Tensor x = make(backend, shape, Layout::planar, x_values), g = make(backend, shape, Layout::planar, g_values);
      values[b] = backend.total_variation(x, 0.3f, g, counted);
      grads[b] = get(backend, g);
      Tensor destination = backend.allocate({3, 12, 14}, Layout::planar);
      backend.fill(destination, -1.0f);
      backend.copy_window(x, Box::at(2, 3, 6, 8), destination, 5, 4);
      copies[b] = get(backend, destination);
    }
    EXPECT_LT(relative(values[1], values[0]), 1e-10);
    EXPECT_LT(relative_to_max(grads[1], grads[0]), kF32Tolerance);
    EXPECT_EQ(copies[1], copies[0]);
  }
}

TEST_P(CudaAgainstCpu, VectorOpsAndAdam) {
  const Shape shape{5, 37, 29};  // not a multiple of any block size
  auto a_values = random(shape.elements()), b_values = random(shape.elements());
  Backend* backends[2] = {cpu.get(), gpu.get()};
  double dots[2], sums[2];
  std::vector<float> results[2][6];
  std::vector<double> accumulated[2];
  for (int b = 0; b < 2; ++b) {
    Backend& backend = *backends[b];
    Tensor a = make(backend, shape, Layout::planar, a_values), bt = make(backend, shape, Layout::planar, b_values);
    dots[b] = backend.dot(a, bt);
    sums[b] = backend.sum_abs(a);
    Tensor d = backend.allocate(shape, Layout::planar);
    backend.subtract(a, bt, d);
    backend.scale(d, -1.5f);
    backend.axpy(0.75f, a, d);
    results[b][0] = get(backend, d);
    Tensor filled = backend.allocate(shape, Layout::features);
    backend.fill(filled, 0.3f);
    Tensor features = make(backend, shape, Layout::features, b_values);
    backend.axpy(-2.0f, features, filled);  // features-typed axpy (bf16 in bf16)
    results[b][1] = get(backend, filled);
    Tensor copied = backend.allocate(shape, Layout::planar);
    backend.copy(a, copied);
    results[b][2] = get(backend, copied);
    // Two sums side by side in one buffer, one written from the host first.
    DoubleBuffer sums_buffer = backend.allocate_doubles(2 * shape.elements() + 1);
    backend.write_doubles(std::vector<double>(shape.elements(), 0.125), sums_buffer, 1);
    backend.accumulate_double(a, sums_buffer, 1);
    backend.accumulate_double(bt, sums_buffer, 1);
    backend.accumulate_double(bt, sums_buffer, 1 + shape.elements());
    accumulated[b].resize(sums_buffer.size());
    backend.read_doubles(sums_buffer, 0, accumulated[b]);
    Tensor assigned = backend.allocate(shape, Layout::planar);
    backend.assign_from_double(sums_buffer, 1, assigned);
    results[b][3] = get(backend, assigned);
    // Adam: three steps from zero moments.
    Tensor x = make(backend, shape, Layout::planar, a_values), g = make(backend, shape, Layout::planar, b_values);
    Tensor m = backend.allocate(shape, Layout::planar), v = backend.allocate(shape, Layout::planar);
    AdamState state;
    for (int step = 0; step < 3; ++step, ++state.step) backend.adam_update(x, g, m, v, state);
    results[b][4] = get(backend, x);
    results[b][5] = get(backend, v);
  }
  EXPECT_LT(relative(dots[1], dots[0]), 1e-10);
  EXPECT_LT(relative(sums[1], sums[0]), 1e-10);
  EXPECT_LT(relative_to_max(results[1][0], results[0][0]), 1e-6) << "subtract, scale, axpy";
  EXPECT_LT(relative_to_max(results[1][1], results[0][1]), tolerance()) << "fill, axpy on features";
  EXPECT_EQ(results[1][2], results[0][2]) << "copy";
  EXPECT_EQ(accumulated[1], accumulated[0]) << "accumulate_double";
  EXPECT_EQ(results[1][3], results[0][3]) << "assign_from_double";
  EXPECT_LT(relative_to_max(results[1][4], results[0][4]), 1e-6) << "adam x";
  EXPECT_LT(relative_to_max(results[1][5], results[0][5]), 1e-6) << "adam v";
}

INSTANTIATE_TEST_SUITE_P(Cuda, CudaAgainstCpu, ::testing::Values(Precision::f32, Precision::bf16),
                         [](const auto& info) { return std::string(precision_name(info.param)); });

// ------------------------------------------------ the whole objective

struct Evaluation {
  LossTerms losses;
  std::vector<float> gradient;
};

Evaluation evaluate(Backend& backend, const WeightSet& weights, const ObjectiveSettings& settings, Shape shape,
                    Shape style_shape, std::uint64_t seed) {
  SingleProcess single;
  testing::WholeObjective objective(backend, architecture(weights.architecture), weights, shape, settings, single);
  auto upload = [&](Shape s, std::uint64_t offset) {
    Tensor t = backend.allocate(s, Layout::planar);
    backend.upload(uniform_vector(seed + offset, s.elements(), -100.0f, 100.0f), t);
    return t;
  };
  Tensor x = upload(shape, 1), content = upload(shape, 2), style = upload(style_shape, 3);
  objective.set_content(content);
  objective.set_styles({&style}, {1.0f}, weights);
  Tensor gradient = backend.allocate(shape, Layout::planar);
  Evaluation e;
  e.losses = objective.evaluate(x, gradient);
  e.gradient.resize(gradient.elements());
  backend.download(gradient, e.gradient);
  return e;
}

struct ObjectiveCase {
  const char* model;
  std::vector<std::string> content, style;
  Shape shape, style_shape;
};

const ObjectiveCase kObjectiveCases[] = {
    {"vgg19", {"relu4_2"}, {"relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"}, {3, 40, 48}, {3, 44, 36}},
    {"nin", {"relu7"}, {"relu0", "relu3", "relu7"}, {3, 99, 107}, {3, 91, 103}},
};

// L-BFGS's inner products (five rows, so more than one pass of the GPU's
// four-row kernel) and its linear combination, written into one of its
// own terms.
TEST_P(CudaAgainstCpu, DotProductsAndCombine) {
  const Shape shape{3, 41, 37};
  std::vector<std::vector<float>> values;
  for (int k = 0; k < 7; ++k) values.push_back(random(shape.elements()));
  Backend* backends[2] = {cpu.get(), gpu.get()};
  std::vector<double> products[2];
  std::vector<float> combined[2];
  for (int b = 0; b < 2; ++b) {
    Backend& backend = *backends[b];
    std::vector<Tensor> tensors;
    for (const auto& v : values) tensors.push_back(make(backend, shape, Layout::planar, v));
    std::vector<const Tensor*> rows = {&tensors[0], &tensors[1], &tensors[2], &tensors[3], &tensors[4]};
    std::vector<const Tensor*> columns = {&tensors[5], &tensors[6], &tensors[0]};
    products[b].resize(rows.size() * columns.size());
    backend.dot_products(rows, columns, products[b]);
    const double coefficients[] = {0.5, -2.0, 1e-3, 3.0};
    const Tensor* terms[] = {&tensors[0], &tensors[1], &tensors[5], &tensors[6]};
    backend.combine(terms, coefficients, tensors[1]);
    combined[b] = get(backend, tensors[1]);
  }
  for (std::size_t k = 0; k < products[0].size(); ++k)
    EXPECT_LT(relative(products[1][k], products[0][k]), 1e-10) << "product " << k;
  // Summed in double on both; the GPU may fuse a multiply and an add.
  EXPECT_LT(relative_to_max(combined[1], combined[0]), 1e-7) << "combine";
}

TEST(CudaObjective, LossAndGradientAgreeWithTheCpuInF32) {
  SKIP_WITHOUT_GPU(gpu);
  auto cpu = make_backend("cpu");
  for (const auto& c : kObjectiveCases) {
    SCOPED_TRACE(c.model);
    WeightSet weights = testing::synthetic_weights(c.model);
    ObjectiveSettings settings;
    settings.content_layers = c.content;
    settings.style_layers = c.style;
    settings.tv_weight = 1e-3f;
    const std::uint64_t seed = fresh_seed();
    Evaluation expected = evaluate(*cpu, weights, settings, c.shape, c.style_shape, seed);
    Evaluation got = evaluate(*gpu, weights, settings, c.shape, c.style_shape, seed);
    EXPECT_LT(relative(got.losses.content, expected.losses.content), kF32Tolerance);
    EXPECT_LT(relative(got.losses.style, expected.losses.style), kF32Tolerance);
    EXPECT_LT(relative(got.losses.tv, expected.losses.tv), 1e-10);
    EXPECT_LT(relative_to_max(got.gradient, expected.gradient), kF32Tolerance);
  }
}

TEST(CudaObjective, Bf16AgreesWithCpuF32WithinTheBoundsOfCpuBf16) {
  SKIP_WITHOUT_GPU(gpu);
  try {
    gpu->set_precision(Precision::bf16);
  } catch (const Error& e) {
    GTEST_SKIP() << "this GPU has no bf16: " << e.what();
  }
  auto cpu = make_backend("cpu");
  const auto& c = kObjectiveCases[0];
  WeightSet weights = testing::synthetic_weights(c.model);
  ObjectiveSettings settings;
  settings.content_layers = c.content;
  settings.style_layers = c.style;
  const std::uint64_t seed = fresh_seed();
  Evaluation f32 = evaluate(*cpu, weights, settings, c.shape, c.style_shape, seed);
  Evaluation bf16 = evaluate(*gpu, weights, settings, c.shape, c.style_shape, seed);
  EXPECT_LT(relative(bf16.losses.content, f32.losses.content), 0.005);
  EXPECT_LT(relative(bf16.losses.style, f32.losses.style), 0.005);
  ASSERT_EQ(bf16.gradient.size(), f32.gradient.size());
  auto agreement = testing::compare_gradients(f32.gradient, bf16.gradient);
  EXPECT_GT(agreement.cosine, 0.99);
  EXPECT_LT(agreement.norm_relative, 0.02);
  std::printf("CUDA bf16 vs CPU f32: content %.3e, style %.3e relative; gradient cosine %.6f, norm %.3e relative\n",
              relative(bf16.losses.content, f32.losses.content), relative(bf16.losses.style, f32.losses.style),
              agreement.cosine, agreement.norm_relative);
}

// ------------------------------------------------ tiles on one GPU

// testing::render_case with the backend chosen (that helper renders on the
// CPU): the same case, settings and seeds.
Image render_on(Backend& backend, const testing::RenderCase& c, const std::string& optimizer, int rows, int columns,
                int halo_px = -1) {
  SingleProcess single;
  auto renderer = testing::case_renderer(c, backend, single, optimizer, rows, columns, halo_px);
  EXPECT_EQ(renderer->run(nullptr), 6) << renderer->stop_reason();
  return renderer->image();
}

class CudaTiledEqualsWhole : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {};

TEST_P(CudaTiledEqualsWhole, SameImageOnSeveralTilesOfOneGpu) {
  SKIP_WITHOUT_GPU(gpu);
  auto [model, optimizer] = GetParam();
  const auto& c = model == "nin" ? testing::kNinCase : testing::kVggCase;
  Image whole = render_on(*gpu, c, optimizer, 1, 1);
  Image start = testing::seeded_rgb(c.width, c.height, 71);
  EXPECT_GT(testing::max_difference(whole, start), 1e-2);  // the render moved the image
  for (auto [rows, columns] : {std::pair{2, 2}, {3, 2}, {1, 3}}) {
    SCOPED_TRACE(std::to_string(rows) + "x" + std::to_string(columns) + " tiles");
    EXPECT_LE(testing::max_difference(render_on(*gpu, c, optimizer, rows, columns), whole), 1e-4);
  }
  // And the GPU's whole render is the CPU's, with Adam, whose six steps
  // follow the gradient without magnifying round-off. (L-BFGS's second step
  // divides by a difference of nearly equal gradients, see
  // render_cases.hpp: two backends that round differently need not agree
  // there, only each with itself, which the loop above checks.)
  if (optimizer == "adam") {
    auto cpu = make_backend("cpu");
    EXPECT_LE(testing::max_difference(render_on(*cpu, c, optimizer, 1, 1), whole), 1e-3);
  }
}

INSTANTIATE_TEST_SUITE_P(Cuda, CudaTiledEqualsWhole,
                         ::testing::Combine(::testing::Values("vgg19", "nin"), ::testing::Values("lbfgs", "adam")),
                         [](const auto& info) { return std::get<0>(info.param) + "_" + std::get<1>(info.param); });

// Running out of GPU memory is a message that says so (and what to do),
// never a crash; the backend stays usable afterwards.
TEST(CudaMemory, OutOfMemoryIsAClearErrorAndPeakIsCounted) {
  SKIP_WITHOUT_GPU(gpu);
  const std::size_t before = gpu->peak_device_bytes();
  Tensor small = gpu->allocate({4, 256, 256}, Layout::planar);
  EXPECT_GE(gpu->peak_device_bytes(), before + small.elements() * sizeof(float));
  try {
    gpu->allocate({1 << 20, 1 << 10, 1 << 10}, Layout::planar);  // 2^40 floats: 16 TiB
    ADD_FAILURE() << "a 16 TiB allocation succeeded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("out of GPU memory"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("--tiles"), std::string::npos) << e.what();
  }
  gpu->fill(small, 2.0f);
  EXPECT_EQ(gpu->sum_abs(small), 2.0 * small.elements());
}

// ------------------------------------------------ without a GPU

// What every machine can check: the registry knows the backend, and asking
// for it without a GPU is one clear error, never a crash.
TEST(CudaRegistry, ListedAndClearWithoutAGpu) {
  auto names = available_backends();
  ASSERT_NE(std::find(names.begin(), names.end(), "cuda"), names.end()) << "this test is built only with CUDA";
  std::string why_not;
  auto gpu = cuda_backend(why_not);
  if (gpu) {
    EXPECT_EQ(gpu->name(), "cuda");
    EXPECT_FALSE(gpu->describe().empty());
    EXPECT_EQ(make_backend("auto")->name(), "cuda");
  } else {
    EXPECT_NE(why_not.find("cuda"), std::string::npos) << why_not;
    EXPECT_EQ(make_backend("auto")->name(), "cpu");
    std::printf("no GPU here, as expected on CI: %s\n", why_not.c_str());
  }
}

}  // namespace
}  // namespace tessera
