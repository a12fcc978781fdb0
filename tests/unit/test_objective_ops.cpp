// The objective's building blocks on the backend (Gram products, squared
// distance, total variation, vector ops, Adam's update, layout conversion)
// against plain double-precision computations written here, every gradient
// against central finite differences of a double-precision reference; then
// the whole Objective (DESIGN.md section 1) on a small VGG-19 prefix against
// a double-precision reference of it built from tests/support/reference_ops.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <iostream>
#include <sstream>

#include "support/golden.hpp"
#include "support/reference_ops.hpp"
#include "support/test_support.hpp"
#include "support/whole_objective.hpp"
#include "tessera/backend.hpp"
#include "tessera/error.hpp"
#include "tessera/objective.hpp"
#include "tessera/tiled_objective.hpp"
#include "tessera/tiling.hpp"

namespace tessera {
namespace {

using testing::uniform_vector;

std::size_t planar_index(const Shape& s, int c, int y, int x) { return (std::size_t(c) * s.height + y) * s.width + x; }

bool inside(const Box& w, int y, int x) { return y >= w.y0 && y < w.y0 + w.height() && x >= w.x0 && x < w.x0 + w.width(); }

std::vector<double> to_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

// A symmetric pattern for Gram-shaped matrices: one value per unordered pair.
float uniform_at_pair(int i, int j) {
  int lo = std::min(i, j), hi = std::max(i, j);
  return testing::uniform_at(117, std::uint64_t(hi) * 1000 + lo, -1.0f, 1.0f);
}

double max_abs(const std::vector<double>& v) {
  double m = 0.0;
  for (double e : v) m = std::max(m, std::abs(e));
  return m;
}

// max |a - b| / max |b|.
double relative_error(const std::vector<float>& a, const std::vector<double>& b) {
  double worst = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(double(a[i]) - b[i]));
  double scale = max_abs(b);
  return scale > 0.0 ? worst / scale : worst;
}

// Central differences of a double-precision function at every element.
std::vector<double> finite_differences(const std::function<double(const std::vector<double>&)>& f,
                                       std::vector<double> x, double h) {
  std::vector<double> gradient(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    double keep = x[i];
    x[i] = keep + h;
    double plus = f(x);
    x[i] = keep - h;
    double minus = f(x);
    x[i] = keep;
    gradient[i] = (plus - minus) / (2.0 * h);
  }
  return gradient;
}

class BackendOps : public ::testing::Test {
 protected:
  std::unique_ptr<Backend> backend = make_backend("cpu");

  // Host data is always planar; the backend places it in `layout`.
  Tensor make(Shape shape, Layout layout, const std::vector<float>& planar_values) {
    Tensor t = backend->allocate(shape, layout);
    backend->upload(planar_values, t);
    return t;
  }
  std::vector<float> get(const Tensor& t) {
    std::vector<float> host(t.elements());
    backend->download(t, host);
    return host;
  }
};

// ---------------------------------------------------------------- memory

TEST_F(BackendOps, FeaturesLayoutRoundTripsOnOddShapes) {
  for (Shape shape : {Shape{3, 5, 7}, Shape{17, 3, 11}, Shape{1, 1, 1}, Shape{5, 1, 9}, Shape{64, 2, 3}}) {
    SCOPED_TRACE(shape.describe());
    auto values = uniform_vector(101, shape.elements(), -10.0f, 10.0f);
    Tensor features = make(shape, Layout::features, values);
    // The CPU backend's features layout is oneDNN's NHWC: element (c, y, x)
    // at (y * W + x) * C + c. (Tensor memory is host memory on this backend.)
    ASSERT_EQ(backend->name(), "cpu");
    bool nhwc = true;
    for (int c = 0; c < shape.channels; ++c)
      for (int y = 0; y < shape.height; ++y)
        for (int x = 0; x < shape.width; ++x)
          nhwc &= features.data()[(std::size_t(y) * shape.width + x) * shape.channels + c] ==
                  values[planar_index(shape, c, y, x)];
    EXPECT_TRUE(nhwc) << "features memory is not NHWC";
    // Download converts back exactly (a reorder moves bits, no arithmetic).
    EXPECT_EQ(get(features), values);
    // So does convert(), both ways.
    Tensor planar = backend->allocate(shape, Layout::planar);
    backend->convert(features, planar);
    EXPECT_EQ(get(planar), values);
    Tensor again = backend->allocate(shape, Layout::features);
    backend->convert(planar, again);
    EXPECT_EQ(std::memcmp(again.data(), features.data(), shape.elements() * sizeof(float)), 0);
  }
}

// ---------------------------------------------------------------- Gram

struct GramCase {
  const char* name;
  Box window;
};

class GramOperatorTest : public BackendOps, public ::testing::WithParamInterface<GramCase> {
 protected:
  static constexpr Shape kShape{24, 7, 9};
  std::vector<float> features_host = uniform_vector(111, kShape.elements(), -1.0f, 1.0f);

  // G_ij = scale * sum over the window of F_i(p) F_j(p), in double.
  static std::vector<double> reference_gram(const std::vector<double>& f, const Box& w, double scale) {
    const int c = kShape.channels;
    std::vector<double> g(std::size_t(c) * c, 0.0);
    for (int i = 0; i < c; ++i)
      for (int j = 0; j < c; ++j) {
        double sum = 0.0;
        for (int y = w.y0; y < w.y0 + w.height(); ++y)
          for (int x = w.x0; x < w.x0 + w.width(); ++x)
            sum += f[planar_index(kShape, i, y, x)] * f[planar_index(kShape, j, y, x)];
        g[std::size_t(i) * c + j] = scale * sum;
      }
    return g;
  }
};

// Float32 sums of at most 63 products of values in [-1, 1] land within a few
// 1e-7 of the largest entry (2.5e-7 at worst here, forward and backward);
// 2e-6 leaves room for other summation orders (other ISAs, blockings).
constexpr double kGramTolerance = 2e-6;

TEST_P(GramOperatorTest, ForwardMatchesDoubleAndOverwrites) {
  const Box w = GetParam().window;
  const float scale = float(1.0 / (kShape.channels * w.area()));
  auto op = backend->plan_gram(kShape);
  Tensor f = make(kShape, Layout::features, features_host);
  Tensor gram = backend->allocate({1, kShape.channels, kShape.channels}, Layout::planar);
  backend->fill(gram, 7.0f);  // forward overwrites
  op->forward(f, w, scale, gram);
  auto expected = reference_gram(to_double(features_host), w, scale);
  EXPECT_LT(relative_error(get(gram), expected), kGramTolerance);
  // Twice in a row gives the same (no accumulation between calls).
  op->forward(f, w, scale, gram);
  EXPECT_LT(relative_error(get(gram), expected), kGramTolerance);
}

TEST_P(GramOperatorTest, BackwardAddsInsideTheWindowOnly) {
  const Box w = GetParam().window;
  const int c = kShape.channels;
  const float scale = 0.37f;
  // A symmetric D, as the interface requires.
  std::vector<float> d(std::size_t(c) * c);
  for (int i = 0; i < c; ++i)
    for (int j = 0; j <= i; ++j) d[std::size_t(i) * c + j] = d[std::size_t(j) * c + i] = uniform_at_pair(i, j);
  auto existing = uniform_vector(113, kShape.elements(), -2.0f, 2.0f);

  auto op = backend->plan_gram(kShape);
  Tensor f = make(kShape, Layout::features, features_host);
  Tensor d_tensor = make({1, c, c}, Layout::planar, d);
  Tensor grad = make(kShape, Layout::features, existing);
  op->backward(f, w, d_tensor, scale, grad);
  auto got = get(grad);

  double worst_inside = 0.0, largest = 0.0;
  for (int y = 0; y < kShape.height; ++y)
    for (int x = 0; x < kShape.width; ++x)
      for (int i = 0; i < c; ++i) {
        std::size_t at = planar_index(kShape, i, y, x);
        if (!inside(w, y, x)) {
          // Outside the window: untouched, bit for bit.
          EXPECT_EQ(got[at], existing[at]) << "(c, y, x) = " << i << ", " << y << ", " << x;
          continue;
        }
        double df = 0.0;
        for (int j = 0; j < c; ++j)
          df += double(d[std::size_t(i) * c + j]) * features_host[planar_index(kShape, j, y, x)];
        double want = existing[at] + scale * df;
        worst_inside = std::max(worst_inside, std::abs(got[at] - want));
        largest = std::max(largest, std::abs(want));
      }
  EXPECT_LT(worst_inside / largest, kGramTolerance);
}

// E(F) = sum((G(F) - A)^2), G = s F_w F_w^T: dE/dF = 2 s (D + D^T) F = 4 s D F
// with D = G - A symmetric, which backward applies as (d = D, scale = 4 s).
TEST_P(GramOperatorTest, EnergyGradientMatchesFiniteDifferences) {
  const Box w = GetParam().window;
  const int c = kShape.channels;
  const double s = 1.0 / (double(c) * w.area());
  // A target of the same size as G's entries (diagonal about 1/(3C)), so that
  // D = G - A does not cancel G's digits.
  std::vector<float> a(std::size_t(c) * c);
  for (int i = 0; i < c; ++i)
    for (int j = 0; j <= i; ++j)
      a[std::size_t(i) * c + j] = a[std::size_t(j) * c + i] = 0.05f * uniform_at_pair(i, j) + (i == j ? 0.01f : 0.0f);

  auto op = backend->plan_gram(kShape);
  Tensor f = make(kShape, Layout::features, features_host);
  Tensor gram = backend->allocate({1, c, c}, Layout::planar);
  Tensor target = make({1, c, c}, Layout::planar, a);
  Tensor difference = backend->allocate({1, c, c}, Layout::planar);
  op->forward(f, w, float(s), gram);
  backend->subtract(gram, target, difference);
  Tensor grad = backend->allocate(kShape, Layout::features);
  op->backward(f, w, difference, float(4.0 * s), grad);

  auto energy = [&](const std::vector<double>& features) {
    auto g = reference_gram(features, w, s);
    double e = 0.0;
    for (std::size_t k = 0; k < g.size(); ++k) e += (g[k] - a[k]) * (g[k] - a[k]);
    return e;
  };
  // E is a quartic in F: with h = 1e-4 on entries of size 1 the central
  // difference's truncation error is ~h^2 = 1e-8 relative and its round-off
  // ~1e-16 E / h, both far below float32's 1e-7. Positions outside the window
  // have exactly zero derivative on both sides.
  auto expected = finite_differences(energy, to_double(features_host), 1e-4);
  // float32 G, D = G - A and D F (24-term sums): a few 1e-7 of the largest
  // component (kGramTolerance).
  EXPECT_LT(relative_error(get(grad), expected), kGramTolerance);
}

INSTANTIATE_TEST_SUITE_P(Windows, GramOperatorTest,
                         ::testing::Values(GramCase{"whole_map", Box::at(0, 0, 9, 7)},  // one matmul over all positions
                                           GramCase{"full_width_band",
                                                    Box::at(0, 2, 9, 3)},                 // one matmul over a block of rows
                                           GramCase{"narrow", Box::at(2, 1, 5, 4)},       // one matmul per row, accumulating
                                           GramCase{"last_column", Box::at(8, 0, 1, 7)},  // per row, one position each
                                           GramCase{"one_row", Box::at(3, 6, 4, 1)}),
                         [](const auto& info) { return std::string(info.param.name); });

// ---------------------------------------------------------------- squared distance

// sum over the window and all channels of (a - b)^2, in double.
double reference_squared_distance(const std::vector<double>& a, const std::vector<double>& b, Shape s,
                                  const Box& w) {
  double sum = 0.0;
  for (int c = 0; c < s.channels; ++c)
    for (int y = w.y0; y < w.y0 + w.height(); ++y)
      for (int x = w.x0; x < w.x0 + w.width(); ++x) {
        double d = a[planar_index(s, c, y, x)] - b[planar_index(s, c, y, x)];
        sum += d * d;
      }
  return sum;
}

TEST_F(BackendOps, SquaredDistanceValueAndAccumulatedGradient) {
  const Shape shape{5, 6, 7};
  auto a = uniform_vector(121, shape.elements(), -3.0f, 3.0f);
  auto b = uniform_vector(122, shape.elements(), -3.0f, 3.0f);
  auto existing = uniform_vector(123, shape.elements(), -1.0f, 1.0f);
  const float grad_scale = 0.7f;
  for (Layout layout : {Layout::planar, Layout::features})
    for (Box w : {Box::at(2, 1, 3, 4), whole_map(shape), Box::at(0, 0, 1, 6), Box::at(0, 5, 7, 1)}) {
      SCOPED_TRACE(std::string(layout == Layout::planar ? "planar" : "features") + " window y " + std::to_string(w.y0) +
                   " x " + std::to_string(w.x0) + " " + std::to_string(w.height()) + "x" + std::to_string(w.width()));
      Tensor ta = make(shape, layout, a), tb = make(shape, layout, b), grad = make(shape, layout, existing);
      double expected = reference_squared_distance(to_double(a), to_double(b), shape, w);
      // Each difference is rounded to float once (relative 6e-8); the sum
      // is in double.
      EXPECT_NEAR(backend->squared_distance(ta, tb, w, grad_scale, &grad), expected, 1e-6 * expected);
      EXPECT_NEAR(backend->squared_distance(ta, tb, w, grad_scale, nullptr), expected, 1e-6 * expected);
      auto got = get(grad);
      for (int c = 0; c < shape.channels; ++c)
        for (int y = 0; y < shape.height; ++y)
          for (int x = 0; x < shape.width; ++x) {
            std::size_t i = planar_index(shape, c, y, x);
            if (!inside(w, y, x)) {
              EXPECT_EQ(got[i], existing[i]) << "outside the window at " << c << ", " << y << ", " << x;
              continue;
            }
            double want = existing[i] + double(grad_scale) * (double(a[i]) - b[i]);
            EXPECT_NEAR(got[i], want, 1e-6 * (std::abs(existing[i]) + 5.0)) << c << ", " << y << ", " << x;
          }
    }
}

// The L1 norm of a window (normalised gradients' per-tile sums), in either
// layout, against a sum in double over the same positions.
TEST_F(BackendOps, WindowSumAbsCountsTheWindowOnly) {
  const Shape shape{5, 6, 7};
  auto a = uniform_vector(124, shape.elements(), -3.0f, 3.0f);
  for (Layout layout : {Layout::planar, Layout::features})
    for (Box w : {Box::at(2, 1, 3, 4), whole_map(shape), Box::at(0, 0, 1, 6), Box::at(0, 5, 7, 1)}) {
      SCOPED_TRACE(std::string(layout == Layout::planar ? "planar" : "features") + " window y " + std::to_string(w.y0) +
                   " x " + std::to_string(w.x0));
      double expected = 0.0;
      for (int c = 0; c < shape.channels; ++c)
        for (int y = 0; y < shape.height; ++y)
          for (int x = 0; x < shape.width; ++x)
            if (inside(w, y, x)) expected += std::abs(double(a[planar_index(shape, c, y, x)]));
      EXPECT_NEAR(backend->window_sum_abs(make(shape, layout, a), w), expected, 1e-12 * expected);
    }
  EXPECT_THROW(backend->window_sum_abs(make(shape, Layout::planar, a), Box::at(0, 0, 1, 7)), Error);
}

TEST_F(BackendOps, SquaredDistanceGradientMatchesFiniteDifferences) {
  const Shape shape{4, 5, 6};
  const Box w = Box::at(1, 1, 4, 3);
  auto a = uniform_vector(124, shape.elements(), -1.0f, 1.0f);
  auto b = uniform_vector(125, shape.elements(), -1.0f, 1.0f);
  for (Layout layout : {Layout::planar, Layout::features}) {
    Tensor ta = make(shape, layout, a), tb = make(shape, layout, b);
    Tensor grad = backend->allocate(shape, layout);
    // grad_scale 2 makes the accumulated term d/da of the sum.
    backend->squared_distance(ta, tb, w, 2.0f, &grad);
    auto bd = to_double(b);
    // A quadratic: the central difference is exact but for round-off
    // (~1e-16 * sum / h = 1e-12).
    auto expected = finite_differences(
        [&](const std::vector<double>& x) { return reference_squared_distance(x, bd, shape, w); }, to_double(a), 1e-3);
    EXPECT_LT(relative_error(get(grad), expected), 1e-6) << (layout == Layout::planar ? "planar" : "features");
  }
}

// ---------------------------------------------------------------- total variation

// 0.5 * weight * sum over c, i < H-1, j < W-1 of the squared right and down
// differences (DESIGN.md section 1), in double.
double reference_tv(const std::vector<double>& x, Shape s, double weight) {
  double sum = 0.0;
  for (int c = 0; c < s.channels; ++c)
    for (int i = 0; i + 1 < s.height; ++i)
      for (int j = 0; j + 1 < s.width; ++j) {
        double v = x[planar_index(s, c, i, j)];
        double right = v - x[planar_index(s, c, i, j + 1)];
        double down = v - x[planar_index(s, c, i + 1, j)];
        sum += right * right + down * down;
      }
  return 0.5 * weight * sum;
}

TEST_F(BackendOps, TotalVariationValueMatchesTheDefinition) {
  const float weight = 0.8f;
  for (Shape shape : {Shape{3, 6, 7}, Shape{2, 5, 9}, Shape{1, 2, 2}, Shape{3, 1, 4}, Shape{2, 4, 1}}) {
    SCOPED_TRACE(shape.describe());
    auto x = uniform_vector(131, shape.elements(), -1.0f, 1.0f);
    Tensor image = make(shape, Layout::planar, x);
    Tensor grad = backend->allocate(shape, Layout::planar);
    double expected = reference_tv(to_double(x), shape, weight);
    double got = backend->total_variation(image, weight, grad);
    if (shape.height == 1 || shape.width == 1) {
      // No grid cell: neither value nor gradient.
      EXPECT_EQ(got, 0.0);
      EXPECT_EQ(max_abs(to_double(get(grad))), 0.0);
    } else {
      EXPECT_NEAR(got, expected, 1e-6 * expected);
    }
  }
  // A hand-checked case: one channel, 2 x 3, only the first row's cells count.
  //   x = [0 1 3; 2 2 2]: cells (0,0): right 1, down 4; (0,1): right 4, down 1.
  Tensor image = make({1, 2, 3}, Layout::planar, {0, 1, 3, 2, 2, 2});
  Tensor grad = backend->allocate({1, 2, 3}, Layout::planar);
  EXPECT_DOUBLE_EQ(backend->total_variation(image, 2.0f, grad), 10.0);
}

TEST_F(BackendOps, TotalVariationGradientMatchesFiniteDifferencesAndAccumulates) {
  const float weight = 0.8f;
  for (Shape shape : {Shape{3, 6, 7}, Shape{2, 5, 9}, Shape{1, 2, 2}}) {
    SCOPED_TRACE(shape.describe());
    auto x = uniform_vector(132, shape.elements(), -1.0f, 1.0f);
    auto existing = uniform_vector(133, shape.elements(), -1.0f, 1.0f);
    Tensor image = make(shape, Layout::planar, x);
    Tensor grad = make(shape, Layout::planar, existing);
    backend->total_variation(image, weight, grad);
    // A quadratic: exact central differences but for round-off.
    auto fd = finite_differences([&](const std::vector<double>& v) { return reference_tv(v, shape, weight); },
                                 to_double(x), 1e-3);
    std::vector<double> expected(fd.size());
    for (std::size_t i = 0; i < fd.size(); ++i) expected[i] = existing[i] + fd[i];
    // Sums of at most four float differences, added to the existing value:
    // a few float ulps of values of order 1.
    EXPECT_LT(relative_error(get(grad), expected), 1e-6);
  }
}

// ---------------------------------------------------------------- vector ops

TEST_F(BackendOps, VectorOpsMatchDoubleOverAllElementsInEitherLayout) {
  const Shape shape{7, 11, 13};  // 1001 elements: no multiple of a vector width
  const std::size_t n = shape.elements();
  auto a = uniform_vector(141, n, -3.0f, 3.0f);
  auto b = uniform_vector(142, n, -3.0f, 3.0f);
  a[517] = -42.5f;  // a large magnitude, negative, at an odd place
  double dot = 0.0, l1 = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    dot += double(a[i]) * b[i];
    l1 += std::abs(double(a[i]));
  }
  for (Layout layout : {Layout::planar, Layout::features}) {
    SCOPED_TRACE(layout == Layout::planar ? "planar" : "features");
    Tensor ta = make(shape, layout, a), tb = make(shape, layout, b);
    // Products of floats are exact in double: only the summation order
    // differs.
    EXPECT_NEAR(backend->dot(ta, tb), dot, 1e-12 * l1 * 3.0);
    EXPECT_NEAR(backend->sum_abs(ta), l1, 1e-12 * l1);

    Tensor c = backend->allocate(shape, layout);
    backend->copy(ta, c);
    EXPECT_EQ(get(c), a);

    backend->fill(c, 2.5f);
    EXPECT_EQ(get(c), std::vector<float>(n, 2.5f));

    // float * float is exact in double, so rounding that to float is the
    // correctly rounded product the backend must give.
    backend->copy(ta, c);
    backend->scale(c, -0.3f);
    auto scaled = get(c);
    for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(scaled[i], float(double(a[i]) * double(-0.3f))) << i;

    // Likewise a - b is exact in double for these values (both on a 2^-22
    // grid below 64 in magnitude).
    backend->subtract(ta, tb, c);
    auto difference = get(c);
    for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(difference[i], float(double(a[i]) - b[i])) << i;

    // y += alpha x: one or two roundings (a fused multiply-add is allowed).
    const float alpha = 1.7f;
    backend->copy(tb, c);
    backend->axpy(alpha, ta, c);
    auto y = get(c);
    for (std::size_t i = 0; i < n; ++i) {
      double want = double(b[i]) + double(alpha) * a[i];
      ASSERT_NEAR(y[i], want, 1.2e-7 * (std::abs(double(b[i])) + std::abs(double(alpha) * a[i]))) << i;
    }
  }
  // Sizes must agree.
  Tensor small = backend->allocate({1, 10, 100}, Layout::planar), big = backend->allocate(shape, Layout::planar);
  EXPECT_THROW(backend->dot(small, big), Error);
  EXPECT_THROW(backend->axpy(1.0f, small, big), Error);
}

// L-BFGS's inner products and linear combinations: against double sums of
// the same floats, products in every order of rows and columns, and the
// same numbers on every call.
TEST_F(BackendOps, DotProductsAndCombineMatchDouble) {
  const Shape shape{3, 37, 29};  // 3219 elements: blocks and lanes do not divide it
  const std::size_t n = shape.elements();
  std::vector<std::vector<float>> values;
  std::vector<Tensor> tensors;
  for (int k = 0; k < 6; ++k) {
    values.push_back(uniform_vector(150 + k, n, -2.0f, 2.0f));
    tensors.push_back(make(shape, Layout::planar, values.back()));
  }
  values[3][1000] = 1e4f;  // one large value, so that a wrong pairing shows
  backend->upload(values[3], tensors[3]);
  auto exact_dot = [&](int i, int j, double& scale) {
    double sum = 0.0;
    scale = 0.0;
    for (std::size_t e = 0; e < n; ++e) {
      sum += double(values[i][e]) * values[j][e];
      scale += std::abs(double(values[i][e]) * values[j][e]);
    }
    return sum;
  };
  const Tensor* rows[] = {&tensors[0], &tensors[3], &tensors[5]};
  const Tensor* columns[] = {&tensors[1], &tensors[2], &tensors[3], &tensors[4], &tensors[5]};
  const int row_index[] = {0, 3, 5}, column_index[] = {1, 2, 3, 4, 5};
  std::vector<double> products(15), again(15);
  backend->dot_products(rows, columns, products);
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 5; ++c) {
      double scale = 0.0;
      const double want = exact_dot(row_index[r], column_index[c], scale);
      EXPECT_NEAR(products[std::size_t(r * 5 + c)], want, 1e-13 * scale) << r << " " << c;
    }
  backend->dot_products(rows, columns, again);
  EXPECT_EQ(products, again);
  // One row against one column is a dot product.
  const Tensor* one_row[] = {&tensors[0]};
  const Tensor* one_column[] = {&tensors[1]};
  std::vector<double> single(1);
  backend->dot_products(one_row, one_column, single);
  EXPECT_EQ(single[0], products[0]);

  const double coefficients[] = {0.5, -1.25, 3.0e-3, 2.0};
  const Tensor* terms[] = {&tensors[0], &tensors[1], &tensors[3], &tensors[4]};
  const int term_index[] = {0, 1, 3, 4};
  Tensor out = backend->allocate(shape, Layout::planar, Backend::Contents::unset);
  backend->combine(terms, coefficients, out);
  auto combined = get(out);
  for (std::size_t e = 0; e < n; ++e) {
    double want = 0.0;
    for (int k = 0; k < 4; ++k) want += coefficients[k] * double(values[term_index[k]][e]);
    ASSERT_EQ(combined[e], float(want)) << e;  // summed in double, rounded once
  }
  // Into one of its own terms.
  backend->combine(terms, coefficients, tensors[1]);
  EXPECT_EQ(get(tensors[1]), combined);
}

// The interface checks every call's arguments before any backend runs it:
// each of these is refused with tessera::Error on every backend this machine
// has (the CUDA one where a GPU is present).
TEST(BackendInterface, RefusesBadArgumentsOnEveryBackend) {
  std::vector<std::string> names = {"cpu"};
  try {
    make_backend("cuda");
    names.push_back("cuda");
  } catch (const Error& e) {
    std::cout << "[ SKIPPED  ] the CUDA backend: " << e.what() << std::endl;
  }
  for (const auto& name : names) {
    SCOPED_TRACE(name);
    auto backend = make_backend(name);
    const Shape shape{3, 6, 8};
    Tensor a = backend->allocate(shape, Layout::planar), b = backend->allocate(shape, Layout::planar);
    Tensor other = backend->allocate({3, 6, 7}, Layout::planar);
    Tensor features = backend->allocate(shape, Layout::features);
    std::vector<float> host(shape.elements() - 1);
    EXPECT_THROW(backend->upload(host, a), Error);
    EXPECT_THROW(backend->download(a, host), Error);
    EXPECT_THROW(backend->convert(a, other), Error);
    EXPECT_THROW(backend->squared_distance(a, b, Box::at(0, 0, 9, 6), 1.0f, nullptr), Error);
    EXPECT_THROW(backend->squared_distance(a, features, Box::at(0, 0, 2, 2), 1.0f, nullptr), Error);
    EXPECT_THROW(backend->window_sum_abs(a, Box::at(-1, 0, 2, 2)), Error);
    EXPECT_THROW(backend->copy_window(a, Box::at(0, 0, 4, 4), other, 4, 0), Error);
    EXPECT_THROW(backend->total_variation(features, 1.0f, b), Error);
    EXPECT_THROW(backend->subtract(a, b, other), Error);
    DoubleBuffer sums = backend->allocate_doubles(shape.elements() + 1);
    EXPECT_THROW(backend->accumulate_double(a, sums, 2), Error);  // past the end
    EXPECT_THROW(backend->assign_from_double(sums, 2, a), Error);
    std::vector<double> two(2);
    EXPECT_THROW(backend->write_doubles(two, sums, shape.elements()), Error);
    EXPECT_THROW(backend->read_doubles(sums, shape.elements() + 1, std::span<double>(two.data(), 1)), Error);
    EXPECT_THROW(backend->adam_update(a, b, other, b, AdamState{}), Error);
    const Tensor* rows[] = {&a};
    const Tensor* mismatched[] = {&b, &other};
    std::vector<double> products(2);
    EXPECT_THROW(backend->dot_products(rows, mismatched, products), Error);
    EXPECT_THROW(backend->dot_products(rows, rows, products), Error);  // 1 product, room for 2
    const double coefficients[] = {1.0, 2.0};
    EXPECT_THROW(backend->combine(mismatched, coefficients, a), Error);
    EXPECT_THROW(backend->combine(rows, coefficients, a), Error);  // 1 term, 2 coefficients
    EXPECT_THROW(backend->combine({}, {}, a), Error);
    // An empty window is no work, not an error.
    EXPECT_EQ(backend->window_sum_abs(a, Box::at(2, 2, 0, 3)), 0.0);

    auto gram = backend->plan_gram(shape);
    Tensor square = backend->allocate({1, 3, 3}, Layout::planar);
    Tensor features_of_another_shape = backend->allocate({3, 6, 7}, Layout::features);
    EXPECT_THROW(gram->forward(features, Box::at(0, 0, 9, 6), 1.0f, square), Error);
    EXPECT_THROW(gram->forward(features_of_another_shape, whole_map(shape), 1.0f, square), Error);
    EXPECT_THROW(gram->forward(features, whole_map(shape), 1.0f, other), Error);
    EXPECT_THROW(gram->backward(features, whole_map(shape), square, 1.0f, features_of_another_shape), Error);

    LayerSpec conv{LayerKind::conv, "conv_test", 3, 4, 3, 1, 1};
    ConvWeights weights{"conv_test", 4, 3, 3, 3, std::vector<float>(4 * 3 * 3 * 3 - 1), std::vector<float>(4)};
    EXPECT_THROW(backend->plan_convolution(conv, weights, shape, Layout::planar), Error);
  }
}

// ---------------------------------------------------------------- Adam

// torch/optim's adam.lua (neural-style's Adam), step t = 1, 2, 3:
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   x -= lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)
// (epsilon added to the uncorrected sqrt(v); torch.optim.Adam differs there).
TEST_F(BackendOps, AdamUpdateFollowsAdamLuaOverThreeSteps) {
  const Shape shape{3, 7, 11};
  const std::size_t n = shape.elements();
  AdamState state;
  state.learning_rate = 0.5f;
  state.beta1 = 0.9f;
  state.beta2 = 0.99f;
  state.epsilon = 1e-3f;  // comparable to sqrt(v) for the small gradients below
  auto x_host = uniform_vector(151, n, -1.0f, 1.0f);
  std::vector<double> x_ref = to_double(x_host), m_ref(n, 0.0), v_ref(n, 0.0);
  Tensor x = make(shape, Layout::planar, x_host);
  Tensor m = backend->allocate(shape, Layout::planar), v = backend->allocate(shape, Layout::planar);
  const double b1 = state.beta1, b2 = state.beta2, eps = state.epsilon, lr = state.learning_rate;
  for (int t = 1; t <= 3; ++t) {
    SCOPED_TRACE("step " + std::to_string(t));
    // Gradients spanning 1e-3 to 1: epsilon matters for the small ones.
    auto g_host = uniform_vector(152 + t, n, -1.0f, 1.0f);
    for (std::size_t i = 0; i < n; i += 2) g_host[i] *= 1e-3f;
    Tensor g = make(shape, Layout::planar, g_host);
    state.step = t - 1;
    backend->adam_update(x, g, m, v, state);
    double step = lr * std::sqrt(1.0 - std::pow(b2, t)) / (1.0 - std::pow(b1, t));
    for (std::size_t i = 0; i < n; ++i) {
      m_ref[i] = b1 * m_ref[i] + (1.0 - b1) * g_host[i];
      v_ref[i] = b2 * v_ref[i] + (1.0 - b2) * double(g_host[i]) * g_host[i];
      x_ref[i] -= step * m_ref[i] / (std::sqrt(v_ref[i]) + eps);
    }
    // A handful of float roundings per element and step.
    EXPECT_LT(relative_error(get(m), m_ref), 1e-6);
    EXPECT_LT(relative_error(get(v), v_ref), 1e-6);
    auto x_got = get(x);
    double worst = 0.0;
    for (std::size_t i = 0; i < n; ++i) worst = std::max(worst, std::abs(x_got[i] - x_ref[i]));
    EXPECT_LT(worst, 2e-6);  // x and its steps are of order 1
  }
}

// ---------------------------------------------------------------- the whole objective

// The first three convolutions of VGG-19 (conv1_1, conv1_2, pool1, conv2_1)
// in double, with the objective of DESIGN.md section 1 on them: content at
// relu2_1, style at relu1_1 and relu2_1, total variation on the image.
class ReferenceObjective {
 public:
  struct Activations {
    std::vector<double> relu1_1, relu1_2, pool1, relu2_1;
    Shape s11, s12, sp1, s21;
  };
  struct Terms {
    double content = 0.0, style1_1 = 0.0, style2_1 = 0.0, tv = 0.0;
  };

  ReferenceObjective(const WeightSet& weights, Shape image, double content_weight, double style_weight,
                     double tv_weight)
      : weights_(weights), image_(image), wc_(content_weight), ws_(style_weight), wtv_(tv_weight) {}

  Activations forward(const std::vector<double>& x, Shape in) const {
    Activations a;
    const auto& c = weights_.convs;
    a.relu1_1 = testing::reference_conv_relu(x, in, c[0].weight, c[0].bias, 64, 3, 1, 1, a.s11);
    a.relu1_2 = testing::reference_conv_relu(a.relu1_1, a.s11, c[1].weight, c[1].bias, 64, 3, 1, 1, a.s12);
    a.pool1 = testing::reference_pool(a.relu1_2, a.s12, Pooling::max, 2, 2, false, a.sp1);
    a.relu2_1 = testing::reference_conv_relu(a.pool1, a.sp1, c[2].weight, c[2].bias, 128, 3, 1, 1, a.s21);
    return a;
  }

  // G = F F^T / (C N).
  static std::vector<double> gram(const std::vector<double>& f, Shape s) {
    const int c = s.channels;
    const std::size_t n = s.plane();
    std::vector<double> g(std::size_t(c) * c);
    for (int i = 0; i < c; ++i)
      for (int j = 0; j < c; ++j) {
        double sum = 0.0;
        for (std::size_t p = 0; p < n; ++p) sum += f[i * n + p] * f[j * n + p];
        g[std::size_t(i) * c + j] = sum / (double(c) * n);
      }
    return g;
  }

  void set_content(const std::vector<double>& content) { content_target_ = forward(content, image_).relu2_1; }

  // A = sum_k w_k G(style_k) / sum_k w_k.
  void set_styles(const std::vector<std::vector<double>>& styles, const std::vector<Shape>& shapes,
                  const std::vector<double>& blend) {
    double total = 0.0;
    for (double w : blend) total += w;
    target1_1_.assign(64 * 64, 0.0);
    target2_1_.assign(128 * 128, 0.0);
    for (std::size_t k = 0; k < styles.size(); ++k) {
      Activations a = forward(styles[k], shapes[k]);
      auto g11 = gram(a.relu1_1, a.s11), g21 = gram(a.relu2_1, a.s21);
      for (std::size_t i = 0; i < g11.size(); ++i) target1_1_[i] += blend[k] / total * g11[i];
      for (std::size_t i = 0; i < g21.size(); ++i) target2_1_[i] += blend[k] / total * g21[i];
    }
  }

  Terms terms(const std::vector<double>& x) const {
    Activations a = forward(x, image_);
    Terms t;
    for (std::size_t i = 0; i < a.relu2_1.size(); ++i) {
      double d = a.relu2_1[i] - content_target_[i];
      t.content += d * d;
    }
    t.content *= wc_ / double(a.relu2_1.size());
    t.style1_1 = style_term(a.relu1_1, a.s11, target1_1_);
    t.style2_1 = style_term(a.relu2_1, a.s21, target2_1_);
    t.tv = reference_tv(x, image_, wtv_);
    return t;
  }
  double total(const std::vector<double>& x) const {
    Terms t = terms(x);
    return t.content + t.style1_1 + t.style2_1 + t.tv;
  }

  // Which: bit 0 content, bit 1 style, bit 2 TV (to weigh the terms).
  // `normalize`: neural-style's -normalize_gradients, each term's feature
  // gradient divided by its unweighted L1 norm (+ 1e-8) before its weight.
  std::vector<double> gradient(const std::vector<double>& x, int which = 7, bool normalize = false) const {
    Activations a = forward(x, image_);
    // Each term's feature gradient on its own, then added at its layer.
    auto add_term = [&](const std::vector<double>& weighted, double weight, std::vector<double>& into) {
      if (!normalize) {
        for (std::size_t i = 0; i < into.size(); ++i) into[i] += weighted[i];
        return;
      }
      std::vector<double> raw(weighted.size());
      double l1 = 0.0;
      for (std::size_t i = 0; i < raw.size(); ++i) {
        raw[i] = weighted[i] / weight;
        l1 += std::abs(raw[i]);
      }
      for (std::size_t i = 0; i < into.size(); ++i) into[i] += weight * raw[i] / (l1 + 1e-8);
    };
    // Content: d/dF of wc mean((F - P)^2) = 2 wc (F - P) / n.
    std::vector<double> g21(a.relu2_1.size(), 0.0), g11(a.relu1_1.size(), 0.0);
    if (which & 1) {
      std::vector<double> term(g21.size());
      for (std::size_t i = 0; i < g21.size(); ++i)
        term[i] = 2.0 * wc_ * (a.relu2_1[i] - content_target_[i]) / double(g21.size());
      add_term(term, wc_, g21);
    }
    // Style: E = ws sum((G - A)^2) / C^2 with G = F F^T / (C N):
    // dE/dF = 2 ws / C^2 * (D + D^T) F / (C N) = 4 ws D F / (C^3 N).
    if (which & 2) {
      std::vector<double> term21(g21.size(), 0.0), term11(g11.size(), 0.0);
      add_style_gradient(a.relu2_1, a.s21, target2_1_, term21);
      add_style_gradient(a.relu1_1, a.s11, target1_1_, term11);
      add_term(term21, ws_, g21);
      add_term(term11, ws_, g11);
    }
    auto gp1 = testing::reference_conv_relu_backward(a.relu2_1, a.s21, g21, weights_.convs[2].weight, a.sp1, 3, 1, 1);
    auto g12 = testing::reference_pool_backward(a.relu1_2, a.s12, Pooling::max, 2, 2, false, gp1);
    auto g11_from_above =
        testing::reference_conv_relu_backward(a.relu1_2, a.s12, g12, weights_.convs[1].weight, a.s11, 3, 1, 1);
    for (std::size_t i = 0; i < g11.size(); ++i) g11[i] += g11_from_above[i];
    auto gx = testing::reference_conv_relu_backward(a.relu1_1, a.s11, g11, weights_.convs[0].weight, image_, 3, 1, 1);
    if (which & 4) {
      // TV: each cell (i, j) adds w (right + down) to x[i, j], -w right to
      // x[i, j+1] and -w down to x[i+1, j].
      for (int c = 0; c < image_.channels; ++c)
        for (int i = 0; i + 1 < image_.height; ++i)
          for (int j = 0; j + 1 < image_.width; ++j) {
            std::size_t p = planar_index(image_, c, i, j), r = planar_index(image_, c, i, j + 1),
                        d = planar_index(image_, c, i + 1, j);
            double right = x[p] - x[r], down = x[p] - x[d];
            gx[p] += wtv_ * (right + down);
            gx[r] -= wtv_ * right;
            gx[d] -= wtv_ * down;
          }
    }
    return gx;
  }

  // The smallest |pre-activation| of each convolution, and the smallest gap
  // between the largest and second-largest input of a max-pool window whose
  // maximum is positive, each relative to its layer's largest magnitude.
  double kink_margin(const std::vector<double>& x) const {
    Activations a = forward(x, image_);
    double margin = std::min({pre_activation_margin(x, image_, 0), pre_activation_margin(a.relu1_1, a.s11, 1),
                              pre_activation_margin(a.pool1, a.sp1, 2)});
    double largest = max_abs(a.relu1_2), smallest_gap = INFINITY;
    const Shape& s = a.s12;
    for (int c = 0; c < s.channels; ++c)
      for (int y = 0; y + 1 < s.height; y += 2)
        for (int x0 = 0; x0 + 1 < s.width; x0 += 2) {
          double v[4] = {a.relu1_2[planar_index(s, c, y, x0)], a.relu1_2[planar_index(s, c, y, x0 + 1)],
                         a.relu1_2[planar_index(s, c, y + 1, x0)], a.relu1_2[planar_index(s, c, y + 1, x0 + 1)]};
          std::sort(v, v + 4);
          if (v[3] > 0.0) smallest_gap = std::min(smallest_gap, v[3] - v[2]);
        }
    return std::min(margin, smallest_gap / largest);
  }

  // Which units are active and which input wins each pool window: equal
  // patterns at two inputs mean the objective is one polynomial between them.
  std::vector<bool> kink_pattern(const std::vector<double>& x) const {
    Activations a = forward(x, image_);
    std::vector<bool> pattern;
    for (const auto* layer : {&a.relu1_1, &a.relu1_2, &a.relu2_1})
      for (double v : *layer) pattern.push_back(v > 0.0);
    const Shape& s = a.s12;
    for (int c = 0; c < s.channels; ++c)
      for (int y = 0; y + 1 < s.height; y += 2)
        for (int x0 = 0; x0 + 1 < s.width; x0 += 2) {
          std::size_t at[4] = {planar_index(s, c, y, x0), planar_index(s, c, y, x0 + 1), planar_index(s, c, y + 1, x0),
                               planar_index(s, c, y + 1, x0 + 1)};
          int best = 0;
          for (int k = 1; k < 4; ++k)
            if (a.relu1_2[at[k]] > a.relu1_2[at[best]]) best = k;
          pattern.push_back(best & 1);
          pattern.push_back(best & 2);
        }
    return pattern;
  }

 private:
  double style_term(const std::vector<double>& f, Shape s, const std::vector<double>& target) const {
    auto g = gram(f, s);
    double sum = 0.0;
    for (std::size_t i = 0; i < g.size(); ++i) sum += (g[i] - target[i]) * (g[i] - target[i]);
    return ws_ * sum / (double(s.channels) * s.channels);
  }

  void add_style_gradient(const std::vector<double>& f, Shape s, const std::vector<double>& target,
                          std::vector<double>& grad) const {
    auto g = gram(f, s);
    const int c = s.channels;
    const std::size_t n = s.plane();
    const double factor = 4.0 * ws_ / (double(c) * c * c * n);
    for (int i = 0; i < c; ++i)
      for (std::size_t p = 0; p < n; ++p) {
        double sum = 0.0;
        for (int j = 0; j < c; ++j) sum += (g[std::size_t(i) * c + j] - target[std::size_t(i) * c + j]) * f[j * n + p];
        grad[i * n + p] += factor * sum;
      }
  }

  // Pre-activations z of convolution k without a second implementation:
  // z = relu(z) - relu(-z), the second from negated weights and bias.
  double pre_activation_margin(const std::vector<double>& input, Shape in, int k) const {
    const ConvWeights& conv = weights_.convs[k];
    std::vector<float> neg_w(conv.weight), neg_b(conv.bias);
    for (float& w : neg_w) w = -w;
    for (float& b : neg_b) b = -b;
    Shape out;
    auto positive = testing::reference_conv_relu(input, in, conv.weight, conv.bias, conv.out_channels, 3, 1, 1, out);
    auto negative = testing::reference_conv_relu(input, in, neg_w, neg_b, conv.out_channels, 3, 1, 1, out);
    double largest = 0.0, smallest = INFINITY;
    for (std::size_t i = 0; i < positive.size(); ++i) {
      double z = std::abs(positive[i] - negative[i]);
      largest = std::max(largest, z);
      smallest = std::min(smallest, z);
    }
    return smallest / largest;
  }

  const WeightSet& weights_;
  Shape image_;
  double wc_, ws_, wtv_;
  std::vector<double> content_target_, target1_1_, target2_1_;
};

TEST(ObjectiveGradient, MatchesADoublePrecisionReferenceOnAVgg19Prefix) {
  const WeightSet weights = testing::synthetic_weights("vgg19", 3);  // conv1_1, conv1_2, conv2_1
  const Shape shape{3, 10, 12};
  const std::vector<Shape> style_shapes = {{3, 8, 14}, {3, 12, 10}};
  const std::vector<float> blend = {1.0f, 3.0f};  // normalised to 0.25, 0.75
  // Weights that give each term a comparable share of the gradient (norms
  // about 0.11 content, 0.13 style, 0.13 TV with these inputs; checked at the
  // end), so that an error in any one of them shows.
  ObjectiveSettings settings;
  settings.content_layers = {"relu2_1"};
  settings.style_layers = {"relu1_1", "relu2_1"};
  settings.content_weight = 2.0f;
  settings.style_weight = 1e4f;
  settings.tv_weight = 3e-3f;

  auto content = uniform_vector(161, shape.elements(), -1.0f, 1.0f);
  std::vector<std::vector<float>> styles = {uniform_vector(162, style_shapes[0].elements(), -2.0f, 2.0f),
                                            uniform_vector(163, style_shapes[1].elements(), 0.0f, 1.0f)};
  ReferenceObjective reference(weights, shape, settings.content_weight, settings.style_weight, settings.tv_weight);
  reference.set_content(to_double(content));
  reference.set_styles({to_double(styles[0]), to_double(styles[1])}, style_shapes, {blend[0], blend[1]});

  // The image: the first seed whose every ReLU pre-activation (and every
  // max-pool winner's lead) is at least 1e-5 of its layer's largest away from
  // zero. float32 pre-activations carry errors of about 1e-6 of that scale; a
  // unit inside them can be on in float and off in double, which changes the
  // gradient over its whole receptive field: a rounding accident, not a bug.
  // (170 and 171 fail this with the synthetic weights; 172 is used.)
  constexpr double kKinkMargin = 1e-5;
  std::vector<float> x;
  std::uint64_t x_seed = 0;
  for (std::uint64_t seed = 170; seed < 190 && x.empty(); ++seed) {
    auto candidate = uniform_vector(seed, shape.elements(), -1.0f, 1.0f);
    if (reference.kink_margin(to_double(candidate)) >= kKinkMargin) {
      x = candidate;
      x_seed = seed;
    }
  }
  ASSERT_FALSE(x.empty()) << "no seed in 170..189 keeps the ReLUs " << kKinkMargin << " away from their kinks";
  RecordProperty("x_seed", std::to_string(x_seed));
  const std::vector<double> xd = to_double(x);

  // The backend's objective.
  auto backend = make_backend("cpu");
  SingleProcess single;
  testing::WholeObjective objective(*backend, architecture("vgg19"), weights, shape, settings, single);
  auto upload = [&](Shape s, const std::vector<float>& values) {
    Tensor t = backend->allocate(s, Layout::planar);
    backend->upload(values, t);
    return t;
  };
  Tensor content_image = upload(shape, content);
  Tensor style0 = upload(style_shapes[0], styles[0]), style1 = upload(style_shapes[1], styles[1]);
  objective.set_content(content_image);
  objective.set_styles({&style0, &style1}, blend, weights);
  Tensor image = upload(shape, x);
  Tensor gradient = backend->allocate(shape, Layout::planar);
  backend->fill(gradient, 99.0f);  // evaluate overwrites
  LossTerms losses = objective.evaluate(image, gradient);
  std::vector<float> got(shape.elements());
  backend->download(gradient, got);

  // Loss terms: float32 features against double, 1e-6 relative expected.
  auto want = reference.terms(xd);
  EXPECT_NEAR(losses.content, want.content, 1e-5 * want.content);
  ASSERT_EQ(losses.style_per_layer.size(), 2u);
  EXPECT_NEAR(losses.style_per_layer[0], want.style1_1, 1e-5 * want.style1_1);
  EXPECT_NEAR(losses.style_per_layer[1], want.style2_1, 1e-5 * want.style2_1);
  EXPECT_NEAR(losses.tv, want.tv, 1e-5 * want.tv);
  LossTerms measured = objective.measure(image);
  EXPECT_DOUBLE_EQ(measured.total(), losses.total());

  // The reference's own gradient against central differences of its total,
  // at a spread of pixels (corners and edges included). E is a polynomial
  // (degree 4) in x between kinks; h = 1e-6 keeps every unit and pool winner
  // as it is (checked), and leaves round-off ~1e-16 E / h far below 1e-7.
  auto expected = reference.gradient(xd);
  const double scale = max_abs(expected);
  const double h = 1e-6;
  const auto pattern = reference.kink_pattern(xd);
  std::vector<std::size_t> pixels;
  for (int c = 0; c < 3; ++c)
    for (int y : {0, 4, 9})
      for (int x0 : {0, 7, 11}) pixels.push_back(planar_index(shape, c, y, x0));
  double worst_fd = 0.0, worst_fd_backend = 0.0;
  for (std::size_t i : pixels) {
    auto plus = xd, minus = xd;
    plus[i] += h;
    minus[i] -= h;
    ASSERT_EQ(reference.kink_pattern(plus), pattern) << "the step at element " << i << " crosses a kink";
    ASSERT_EQ(reference.kink_pattern(minus), pattern) << "the step at element " << i << " crosses a kink";
    double fd = (reference.total(plus) - reference.total(minus)) / (2 * h);
    worst_fd = std::max(worst_fd, std::abs(expected[i] - fd));
    worst_fd_backend = std::max(worst_fd_backend, std::abs(got[i] - fd));
  }
  EXPECT_LT(worst_fd / scale, 1e-6) << "the double reference disagrees with its own finite differences";

  // The backend's float32 gradient: every pixel against the reference, the
  // sample against the finite differences directly. float32 forward and
  // backward passes through three convolutions and two Gram products land
  // about 1e-6 of the largest component away (measured); 1e-5 leaves 10x for
  // other summation orders, and is 10x stricter than the PyTorch golden
  // tests' 1e-4, which must absorb deeper networks. One term's factor off by
  // 10 % moves the gradient by about 1e-1.
  constexpr double kGradientTolerance = 1e-5;
  double error = relative_error(got, expected);
  EXPECT_LT(error, kGradientTolerance);
  EXPECT_LT(worst_fd_backend / scale, kGradientTolerance);
  std::ostringstream recorded;
  recorded << error;
  RecordProperty("gradient_max_relative_error", recorded.str());

  // The test means something only if every term moves the gradient: each
  // term's share is at least a tenth of the largest.
  double norms[3];
  for (int term = 0; term < 3; ++term) {
    auto part = reference.gradient(xd, 1 << term);
    double sum = 0.0;
    for (double v : part) sum += v * v;
    norms[term] = std::sqrt(sum);
  }
  double largest = std::max({norms[0], norms[1], norms[2]});
  for (int term = 0; term < 3; ++term)
    EXPECT_GT(norms[term], 0.1 * largest)
        << "gradient norms content/style/tv " << norms[0] << " " << norms[1] << " " << norms[2];
}

// neural-style's -normalize_gradients on the tiled objective (what renders
// use), on one tile and on four, against the double reference: each term's
// feature gradient divided by its own L1 norm over the whole map, the
// content and a style term at the same layer (relu2_1) normalised apart.
TEST(ObjectiveGradient, NormalisedGradientsMatchTheReferenceOnAnyTiling) {
  const WeightSet weights = testing::synthetic_weights("vgg19", 3);
  const int w = 20, h = 16;
  const Shape shape{3, h, w};
  const Shape style_shape{3, 14, 18};
  ObjectiveSettings settings;
  settings.content_layers = {"relu2_1"};
  settings.style_layers = {"relu1_1", "relu2_1"};
  settings.content_weight = 2.0f;
  settings.style_weight = 1e4f;
  settings.tv_weight = 0.0f;
  settings.normalize_gradients = true;

  auto content = uniform_vector(181, shape.elements(), -1.0f, 1.0f);
  auto style = uniform_vector(182, style_shape.elements(), -2.0f, 2.0f);
  ReferenceObjective reference(weights, shape, settings.content_weight, settings.style_weight, settings.tv_weight);
  reference.set_content(to_double(content));
  reference.set_styles({to_double(style)}, {style_shape}, {1.0});
  // An image whose ReLUs and pool winners stay clear of their kinks (see
  // the test above for why).
  std::vector<float> x;
  for (std::uint64_t seed = 190; seed < 210 && x.empty(); ++seed) {
    auto candidate = uniform_vector(seed, shape.elements(), -1.0f, 1.0f);
    if (reference.kink_margin(to_double(candidate)) >= 1e-5) x = candidate;
  }
  ASSERT_FALSE(x.empty()) << "no seed in 190..209 keeps the ReLUs away from their kinks";
  const auto expected = reference.gradient(to_double(x), 3, true);
  // Normalising must change the gradient, or this test would not see it.
  ASSERT_GT(relative_error(std::vector<float>(expected.begin(), expected.end()), reference.gradient(to_double(x))),
            0.5);

  auto backend = make_backend("cpu");
  SingleProcess single;
  const auto& arch = architecture("vgg19");
  Tensor style_tensor = backend->allocate(style_shape, Layout::planar);
  backend->upload(style, style_tensor);
  const auto targets = [&] {
    return testing::whole_image_style_targets(*backend, arch, weights, Pooling::max, settings.style_layers,
                                              {&style_tensor}, {1.0f});
  };
  const std::vector<std::string> layers = settings.layers();
  const int stride = total_stride_for(arch, layers);
  for (auto [rows, columns] : {std::pair{1, 1}, {2, 2}}) {
    SCOPED_TRACE(std::to_string(rows) + "x" + std::to_string(columns));
    TileGrid grid = TileGrid::make(w, h, rows, columns, stride, halo_width_for(arch, layers),
                                   reduction_block_for(w, h, stride));
    TiledObjective tiled(*backend, arch, weights, grid, RankMap::contiguous(rows * columns, 1), settings, single);
    tiled.set_content(scatter_boxes(single, content, w, h, tiled.tiled_image().grown_boxes(), tiled.ranks()));
    tiled.set_style_targets(targets());
    Tensor local = backend->allocate({int(tiled.local_elements()), 1, 1}, Layout::planar);
    backend->upload(scatter_boxes(single, x, w, h, tiled.tiled_image().owned_boxes(), tiled.ranks()), local);
    Tensor local_gradient = backend->allocate(local.shape(), Layout::planar);
    tiled.evaluate(local, local_gradient);
    std::vector<float> gradient_local(local.elements()), gradient(shape.elements());
    backend->download(local_gradient, gradient_local);
    tiled.tiled_image().place(0, gradient_local.data(), gradient);
    EXPECT_LT(relative_error(gradient, expected), 1e-5);
  }
}

}  // namespace
}  // namespace tessera
