#include <algorithm>
#include <cmath>
#include <cstdio>
#include <span>

#include "tessera/error.hpp"
#include "tessera/optimizer.hpp"

namespace tessera {

Lbfgs::Lbfgs(Backend& backend, Communicator& communicator, Shape shape, LbfgsSettings settings)
    : backend_(backend), communicator_(communicator), shape_(shape), settings_(settings) {
  if (settings_.history < 1) fail("L-BFGS history must be at least 1, got ", settings_.history);
  if (!(settings_.learning_rate > 0.0f)) fail("L-BFGS learning rate must be positive");
  direction_ = backend_.allocate(shape_, Layout::planar);
  previous_gradient_ = backend_.allocate(shape_, Layout::planar);
  alpha_.resize(settings_.history);
}

double Lbfgs::dot(const Tensor& a, const Tensor& b) { return communicator_.sum(backend_.dot(a, b)); }

Tensor Lbfgs::take_buffer() {
  // The history grows to its full size once, then recycles its oldest pair:
  // no allocation in the steady state.
  if (!spare_.empty()) {
    Tensor t = std::move(spare_.back());
    spare_.pop_back();
    return t;
  }
  return backend_.allocate(shape_, Layout::planar);
}

bool Lbfgs::update(Tensor& x, const Tensor& gradient, double /*loss*/) {
  ++iteration_;
  if (iteration_ == 1) {
    backend_.copy(gradient, direction_);
    backend_.scale(direction_, -1.0f);
    hessian_diagonal_ = 1.0;
  } else {
    // y = g - g_prev, s = t d_prev (the step just taken).
    Tensor y = take_buffer();
    Tensor s = take_buffer();
    backend_.subtract(gradient, previous_gradient_, y);
    backend_.copy(direction_, s);
    backend_.scale(s, step_);
    double products[3] = {backend_.dot(y, s), backend_.dot(y, y), backend_.dot(s, s)};
    communicator_.sum(std::span<double>(products, 3));  // one reduction for the three
    const double ys = products[0], yy = products[1], ss = products[2];
    // torch accepts a pair when y.s > 1e-10, an absolute bound. The
    // objective is normalised by the image's size, so y.s of a step shrinks
    // as the square of the pixel count: on large images (and at the start of
    // each finer scale) every pair was refused, and L-BFGS crawled along the
    // raw gradient. The same bound relative to |y||s| keeps torch's choices
    // wherever y.s is not tiny and works at any size.
    if (ys > 1e-10 * std::sqrt(yy * ss)) {
      if (int(directions_.size()) == settings_.history) {
        spare_.push_back(std::move(directions_.front()));
        spare_.push_back(std::move(steps_.front()));
        directions_.pop_front();
        steps_.pop_front();
        rho_.pop_front();
      }
      directions_.push_back(std::move(y));
      steps_.push_back(std::move(s));
      rho_.push_back(1.0 / ys);
      hessian_diagonal_ = ys / yy;
    } else {
      spare_.push_back(std::move(y));
      spare_.push_back(std::move(s));
    }
    // Two-loop recursion: d = -H g.
    Tensor& q = direction_;
    backend_.copy(gradient, q);
    backend_.scale(q, -1.0f);
    const int count = int(directions_.size());
    for (int i = count - 1; i >= 0; --i) {
      alpha_[i] = dot(steps_[i], q) * rho_[i];
      backend_.axpy(float(-alpha_[i]), directions_[i], q);
    }
    backend_.scale(q, float(hessian_diagonal_));
    for (int i = 0; i < count; ++i) {
      double beta = dot(directions_[i], q) * rho_[i];
      backend_.axpy(float(alpha_[i] - beta), steps_[i], q);
    }
  }
  backend_.copy(gradient, previous_gradient_);

  if (iteration_ == 1) {
    double l1 = communicator_.sum(backend_.sum_abs(gradient));
    step_ = float(std::min(1.0, l1 > 0.0 ? 1.0 / l1 : 1.0) * settings_.learning_rate);
  } else {
    step_ = settings_.learning_rate;
  }
  // neural-style runs with tolX = -1: it stops only when the direction
  // climbs (g.d > 1), which in practice means the gradient vanished or broke.
  double directional = dot(gradient, direction_);
  if (!(directional <= 1.0)) {
    stop_reason_ = std::isfinite(directional) ? "L-BFGS found no descent direction"
                                              : "the gradient is not finite";
    return false;
  }
  backend_.axpy(step_, direction_, x);
  return true;
}

namespace {

std::string pair_name(const char* what, int index) {
  char name[32];
  std::snprintf(name, sizeof name, "%s_%03d", what, index);
  return name;
}

double required(const OptimizerState& state, const std::string& name) {
  auto it = state.scalars.find(name);
  if (it == state.scalars.end()) fail("L-BFGS state: '", name, "' is missing");
  return it->second;
}

}  // namespace

OptimizerState Lbfgs::state() const {
  OptimizerState state;
  state.scalars["iteration"] = iteration_;
  state.scalars["step"] = step_;
  state.scalars["hessian_diagonal"] = hessian_diagonal_;
  state.scalars["history_pairs"] = double(directions_.size());
  if (iteration_ == 0) return state;
  state.vectors = {"direction", "previous_gradient"};
  for (std::size_t i = 0; i < directions_.size(); ++i) {
    state.scalars[pair_name("rho", int(i))] = rho_[i];
    state.vectors.push_back(pair_name("y", int(i)));
    state.vectors.push_back(pair_name("s", int(i)));
  }
  return state;
}

const Tensor& Lbfgs::vector(const std::string& name) const {
  if (name == "direction") return direction_;
  if (name == "previous_gradient") return previous_gradient_;
  for (std::size_t i = 0; i < directions_.size(); ++i) {
    if (name == pair_name("y", int(i))) return directions_[i];
    if (name == pair_name("s", int(i))) return steps_[i];
  }
  fail("internal: L-BFGS has no vector '", name, "'");
}

void Lbfgs::restore(const OptimizerState& state,
                    const std::function<void(const std::string& name, Tensor& vector)>& fill) {
  const double iteration = required(state, "iteration");
  const double pairs = required(state, "history_pairs");
  if (!(iteration >= 0 && iteration < 1e9 && iteration == std::floor(iteration)))
    fail("L-BFGS state: iteration ", iteration, " is not a count");
  if (!(pairs >= 0 && pairs <= settings_.history && pairs == std::floor(pairs)))
    fail("L-BFGS state: ", pairs, " history pairs, this optimiser keeps at most ", settings_.history);
  iteration_ = int(iteration);
  step_ = float(required(state, "step"));
  hessian_diagonal_ = required(state, "hessian_diagonal");
  while (!directions_.empty()) {
    spare_.push_back(std::move(directions_.back()));
    spare_.push_back(std::move(steps_.back()));
    directions_.pop_back();
    steps_.pop_back();
  }
  rho_.clear();
  if (iteration_ == 0) return;
  fill("direction", direction_);
  fill("previous_gradient", previous_gradient_);
  for (int i = 0; i < int(pairs); ++i) {
    directions_.push_back(take_buffer());
    steps_.push_back(take_buffer());
    fill(pair_name("y", i), directions_.back());
    fill(pair_name("s", i), steps_.back());
    rho_.push_back(required(state, pair_name("rho", i)));
  }
}

}  // namespace tessera
