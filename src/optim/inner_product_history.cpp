#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "tessera/error.hpp"
#include "tessera/optimizer.hpp"

namespace tessera {
namespace {

std::string pair_name(const char* what, int index) {
  char name[32];
  std::snprintf(name, sizeof name, "%s_%03d", what, index);
  return name;
}

// Keeps 24 significant bits, as an f32 would (at any exponent). The sums
// behind these numbers depend, in their last bits, on how the image is
// split among ranks and threads; on a ReLU network such a difference, let
// through to the direction, moves some activation across zero within a few
// dozen iterations, and renders on different rank counts part. Rounded here,
// every rank count computes the same numbers unless a sum straddles a
// rounding boundary, and the recursion over them is the same on every rank.
double significant_24(double value) {
  if (!std::isfinite(value) || value == 0.0) return value;
  int exponent = 0;
  const double mantissa = std::frexp(value, &exponent);
  return std::ldexp(std::nearbyint(std::ldexp(mantissa, 24)), exponent - 24);
}

}  // namespace

InnerProductHistory::InnerProductHistory(Backend& backend, Communicator& communicator, Shape shape, int capacity)
    : backend_(backend), communicator_(communicator), shape_(shape), capacity_(capacity) {
  if (capacity_ < 1) fail("L-BFGS history must be at least 1, got ", capacity_);
  direction_ = backend_.allocate(shape_, Layout::planar, Backend::Contents::unset);
  origin_gradient_ = backend_.allocate(shape_, Layout::planar, Backend::Contents::unset);
  pending_s_ = backend_.allocate(shape_, Layout::planar, Backend::Contents::unset);
  pending_y_ = backend_.allocate(shape_, Layout::planar, Backend::Contents::unset);
}

Tensor InnerProductHistory::take_buffer() {
  // The history grows to its full size once, then recycles its oldest pair:
  // no allocation in the steady state.
  if (!spare_.empty()) {
    Tensor t = std::move(spare_.back());
    spare_.pop_back();
    return t;
  }
  return backend_.allocate(shape_, Layout::planar, Backend::Contents::unset);
}

void InnerProductHistory::clear() {
  for (auto& pair : pairs_) {
    spare_.push_back(std::move(pair.s));
    spare_.push_back(std::move(pair.y));
  }
  pairs_.clear();
  products_.clear();
  point_.history.clear();
  point_.has_pair = false;
  hessian_diagonal_ = 1.0;
}

void InnerProductHistory::drop_oldest() {
  const std::size_t n = 2 * pairs_.size(), m = n - 2;
  std::vector<double> kept(m * m);
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < m; ++j) kept[i * m + j] = products_[(i + 2) * n + j + 2];
  products_ = std::move(kept);
  // The point's products against the history lose the same two columns.
  std::vector<double> history;
  for (int r = 0; r < point_.rows; ++r)
    history.insert(history.end(), point_.history.begin() + std::ptrdiff_t(r * n + 2),
                   point_.history.begin() + std::ptrdiff_t((r + 1) * n));
  point_.history = std::move(history);
  spare_.push_back(std::move(pairs_.front().s));
  spare_.push_back(std::move(pairs_.front().y));
  pairs_.pop_front();
}

LbfgsHistory::Measurement InnerProductHistory::measure(const Tensor& gradient, double step, bool with_l1) {
  Point point;
  point.has_pair = step > 0.0 && has_origin_;
  point.rows = point.has_pair ? 3 : 1;
  std::vector<const Tensor*> rows;
  if (point.has_pair) {
    // The pair as the recursion over vectors keeps it: s rounded to f32 as
    // the image took the step, y = g - g_origin.
    // One pass: step is an f32 value, so the product in double rounded
    // once is the f32 product copy-and-scale would give.
    const Tensor* direction[] = {&direction_};
    const double factor[] = {step};
    backend_.combine(direction, factor, pending_s_);
    backend_.subtract(gradient, origin_gradient_, pending_y_);
    rows = {&pending_s_, &pending_y_};
  }
  rows.push_back(&gradient);
  std::vector<const Tensor*> columns;
  for (const auto& pair : pairs_) {
    columns.push_back(&pair.s);
    columns.push_back(&pair.y);
  }
  const std::size_t n = columns.size(), R = rows.size();
  columns.insert(columns.end(), rows.begin(), rows.end());
  // And the direction, for the slope g . d along it.
  if (point.has_pair) columns.push_back(&direction_);
  const std::size_t C = columns.size();

  // Every product, |g|_1 and the element count (once) in one reduction.
  std::vector<double> values(R * C);
  backend_.dot_products(rows, columns, values);
  const std::size_t l1_at = values.size();
  if (with_l1) values.push_back(backend_.sum_abs(gradient));
  const std::size_t count_at = values.size();
  if (total_elements_ == 0.0) values.push_back(double(gradient.elements()));
  communicator_.sum(std::span<double>(values));
  if (total_elements_ == 0.0) total_elements_ = values[count_at];
  for (std::size_t i = 0; i < count_at; ++i) values[i] = significant_24(values[i]);

  point.history.resize(R * n);
  for (std::size_t r = 0; r < R; ++r) {
    for (std::size_t j = 0; j < n; ++j) point.history[r * n + j] = values[r * C + j];
    for (std::size_t k = 0; k < R; ++k) point.mutual[r][k] = values[r * C + n + k];
  }
  point_ = std::move(point);

  Measurement measured;
  measured.slope = point_.has_pair ? values[(R - 1) * C + C - 1] : std::numeric_limits<double>::quiet_NaN();
  measured.l1 = with_l1 ? values[l1_at] : 0.0;
  return measured;
}

void InnerProductHistory::take_in_pair() {
  // torch accepts a pair when y.s > 1e-10, an absolute bound. The
  // objective is normalised by the image's size, so y.s of a step shrinks
  // as the square of the pixel count: on large images (and at the start of
  // each finer scale) every pair was refused, and L-BFGS crawled along the
  // raw gradient. The same bound relative to |y||s| keeps torch's choices
  // wherever y.s is not tiny and works at any size.
  const double ys = point_.mutual[0][1], ss = point_.mutual[0][0], yy = point_.mutual[1][1];
  point_.has_pair = false;  // taken in (or refused) once
  if (!(ys > 1e-10 * std::sqrt(yy * ss))) return;
  if (int(pairs_.size()) == capacity_) drop_oldest();

  const std::size_t n = 2 * pairs_.size(), m = n + 2;
  // The new pair's rows: its products with the history, then with itself.
  std::vector<double> grown(m * m);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < n; ++j) grown[i * m + j] = products_[i * n + j];
  for (std::size_t r = 0; r < 2; ++r)
    for (std::size_t j = 0; j < n; ++j) {
      grown[(n + r) * m + j] = point_.history[r * n + j];
      grown[j * m + n + r] = point_.history[r * n + j];
    }
  for (std::size_t r = 0; r < 2; ++r)
    for (std::size_t k = 0; k < 2; ++k) grown[(n + r) * m + n + k] = point_.mutual[r][k];
  products_ = std::move(grown);

  pairs_.push_back(Pair{std::move(pending_s_), std::move(pending_y_)});
  pending_s_ = take_buffer();
  pending_y_ = take_buffer();

  // The gradient's products with the whole history: its row, then g . s and
  // g . y of the new pair.
  const double gs = point_.mutual[2][0], gy = point_.mutual[2][1];
  keep_gradient_row();
  point_.history.push_back(gs);
  point_.history.push_back(gy);
  hessian_diagonal_ = ys / yy;
}

void InnerProductHistory::keep_gradient_row() {
  // From a point measured with a pair (rows s, y, g, each as long as the
  // history was then): the gradient's row alone.
  if (point_.rows == 1) return;
  const std::size_t row = point_.history.size() / 3;
  point_.history.erase(point_.history.begin(), point_.history.begin() + std::ptrdiff_t(2 * row));
  point_.mutual[0][0] = point_.mutual[2][2];
  point_.rows = 1;
}

LbfgsHistory::Direction InnerProductHistory::next_direction(const Tensor& gradient, bool restart) {
  if (restart) {
    clear();  // the point keeps g . g alone
  } else if (point_.has_pair) {
    take_in_pair();
  }
  keep_gradient_row();

  // The two-loop recursion on coefficients over the basis [s_0, y_0, s_1,
  // y_1, ..., g]: q starts at -g and every vector operation of the
  // recursion becomes one on its coefficients, its dot products sums over
  // the inner-product matrix.
  const int pairs = int(pairs_.size());
  const std::size_t n = 2 * std::size_t(pairs), N = n + 1;
  auto product = [&](std::size_t i, std::size_t j) {
    if (i < n && j < n) return products_[i * n + j];
    if (i < n) return point_.history[i];
    if (j < n) return point_.history[j];
    return point_.mutual[0][0];
  };
  auto dot_row = [&](std::size_t i, const std::vector<double>& coefficients) {
    double sum = 0.0;
    for (std::size_t j = 0; j < N; ++j) sum += product(i, j) * coefficients[j];
    return sum;
  };
  std::vector<double> q(N, 0.0), alpha(std::size_t(pairs), 0.0);
  q[n] = -1.0;
  for (int i = pairs - 1; i >= 0; --i) {
    const std::size_t s = 2 * std::size_t(i), y = s + 1;
    alpha[std::size_t(i)] = dot_row(s, q) / product(s, y);  // rho_i s_i . q
    q[y] -= alpha[std::size_t(i)];
  }
  for (double& c : q) c *= hessian_diagonal_;
  for (int i = 0; i < pairs; ++i) {
    const std::size_t s = 2 * std::size_t(i), y = s + 1;
    const double beta = dot_row(y, q) / product(s, y);
    q[s] += alpha[std::size_t(i)] - beta;
  }

  std::vector<const Tensor*> basis;
  for (const auto& pair : pairs_) {
    basis.push_back(&pair.s);
    basis.push_back(&pair.y);
  }
  basis.push_back(&gradient);
  backend_.combine(basis, q, direction_);

  Direction found;
  found.slope = dot_row(n, q);
  double dd = 0.0;
  for (std::size_t i = 0; i < N; ++i) dd += q[i] * dot_row(i, q);
  found.move = std::sqrt(std::max(dd, 0.0) / total_elements_);

  backend_.copy(gradient, origin_gradient_);
  has_origin_ = true;
  origin_gg_ = point_.mutual[0][0];
  return found;
}

void InnerProductHistory::return_to_origin() {
  // The caller clears the history next (a restart): g . g is all it needs.
  point_ = Point{};
  point_.mutual[0][0] = origin_gg_;
}

void InnerProductHistory::save(OptimizerState& state) const {
  state.scalars["hessian_diagonal"] = hessian_diagonal_;
  state.scalars["history_pairs"] = double(pairs_.size());
  state.vectors.push_back("direction");
  state.vectors.push_back("previous_gradient");
  for (std::size_t i = 0; i < pairs_.size(); ++i) {
    state.vectors.push_back(pair_name("y", int(i)));
    state.vectors.push_back(pair_name("s", int(i)));
  }
  // The upper triangle, row by row: restoring these numbers, rather than
  // recomputing them, continues the render exactly.
  const std::size_t n = 2 * pairs_.size();
  std::vector<double>& upper = state.arrays["inner_products"];
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = i; j < n; ++j) upper.push_back(products_[i * n + j]);
}

const Tensor* InnerProductHistory::vector(const std::string& name) const {
  if (name == "direction") return &direction_;
  if (name == "previous_gradient") return &origin_gradient_;
  for (std::size_t i = 0; i < pairs_.size(); ++i) {
    if (name == pair_name("s", int(i))) return &pairs_[i].s;
    if (name == pair_name("y", int(i))) return &pairs_[i].y;
  }
  return nullptr;
}

void InnerProductHistory::restore(const OptimizerState& state,
                                  const std::function<void(const std::string& name, Tensor& vector)>& fill) {
  auto scalar = [&](const std::string& name) {
    auto it = state.scalars.find(name);
    if (it == state.scalars.end()) fail("L-BFGS state: '", name, "' is missing");
    return it->second;
  };
  const double count = scalar("history_pairs");
  if (!(count >= 0 && count <= capacity_ && count == std::floor(count)))
    fail("L-BFGS state: ", count, " history pairs, this optimiser keeps at most ", capacity_);
  clear();
  hessian_diagonal_ = scalar("hessian_diagonal");
  fill("direction", direction_);
  fill("previous_gradient", origin_gradient_);
  has_origin_ = true;
  for (int i = 0; i < int(count); ++i) {
    Pair pair{take_buffer(), take_buffer()};
    fill(pair_name("s", i), pair.s);
    fill(pair_name("y", i), pair.y);
    pairs_.push_back(std::move(pair));
  }
  const std::size_t n = 2 * pairs_.size();
  auto it = state.arrays.find("inner_products");
  if (it == state.arrays.end()) {
    // Saved by the recursion over vectors (an earlier version): the same
    // pairs, their products computed anew.
    recompute_products();
  } else {
    if (it->second.size() != n * (n + 1) / 2)
      fail("L-BFGS state: ", it->second.size(), " inner products for ", pairs_.size(), " pairs");
    products_.assign(n * n, 0.0);
    std::size_t k = 0;
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = i; j < n; ++j) products_[i * n + j] = products_[j * n + i] = it->second[k++];
  }
  point_ = Point{};
}

void InnerProductHistory::recompute_products() {
  std::vector<const Tensor*> vectors;
  for (const auto& pair : pairs_) {
    vectors.push_back(&pair.s);
    vectors.push_back(&pair.y);
  }
  products_.assign(vectors.size() * vectors.size(), 0.0);
  if (vectors.empty()) return;
  backend_.dot_products(vectors, vectors, products_);
  communicator_.sum(std::span<double>(products_));
  for (double& product : products_) product = significant_24(product);
}

}  // namespace tessera
