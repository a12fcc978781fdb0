#include <algorithm>
#include <cmath>

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
    double ys = dot(y, s);
    if (ys > 1e-10) {
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
      hessian_diagonal_ = ys / dot(directions_.back(), directions_.back());
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

}  // namespace tessera
