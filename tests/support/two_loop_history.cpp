#include "support/two_loop_history.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <span>

#include "tessera/error.hpp"

namespace tessera::testing {
namespace {

std::string pair_name(const char* what, int index) {
  char name[32];
  std::snprintf(name, sizeof name, "%s_%03d", what, index);
  return name;
}

}  // namespace

TwoLoopHistory::TwoLoopHistory(Backend& backend, Communicator& communicator, Shape shape, int capacity)
    : backend_(backend), communicator_(communicator), shape_(shape), capacity_(capacity) {
  direction_ = backend_.allocate(shape_, Layout::planar, Backend::Contents::unset);
  previous_gradient_ = backend_.allocate(shape_, Layout::planar, Backend::Contents::unset);
}

Tensor TwoLoopHistory::take_buffer() {
  if (!spare_.empty()) {
    Tensor t = std::move(spare_.back());
    spare_.pop_back();
    return t;
  }
  return backend_.allocate(shape_, Layout::planar, Backend::Contents::unset);
}

void TwoLoopHistory::clear() {
  while (!directions_.empty()) {
    spare_.push_back(std::move(directions_.back()));
    spare_.push_back(std::move(steps_.back()));
    directions_.pop_back();
    steps_.pop_back();
  }
  rho_.clear();
  hessian_diagonal_ = 1.0;
}

std::vector<double> TwoLoopHistory::host(const Tensor& t) const {
  std::vector<float> values(t.elements());
  backend_.download(t, values);
  return std::vector<double>(values.begin(), values.end());
}

double TwoLoopHistory::dot(const std::vector<double>& a, const std::vector<double>& b) {
  double sum = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) sum += a[i] * b[i];
  return communicator_.sum(sum);
}

LbfgsHistory::Measurement TwoLoopHistory::measure(const Tensor& gradient, double step, bool with_l1) {
  step_ = step;
  Measurement measured;
  if (step > 0.0) measured.slope = communicator_.sum(backend_.dot(gradient, direction_));
  if (with_l1) measured.l1 = communicator_.sum(backend_.sum_abs(gradient));
  return measured;
}

LbfgsHistory::Direction TwoLoopHistory::next_direction(const Tensor& gradient, bool restart) {
  if (restart || step_ == 0.0) {
    if (restart) clear();
    backend_.copy(gradient, direction_);
    backend_.scale(direction_, -1.0f);
  } else {
    // y = g - g_prev, s = t d_prev (the step just taken).
    Tensor y = take_buffer();
    Tensor s = take_buffer();
    backend_.subtract(gradient, previous_gradient_, y);
    backend_.copy(direction_, s);
    backend_.scale(s, float(step_));
    double products[3] = {backend_.dot(y, s), backend_.dot(y, y), backend_.dot(s, s)};
    communicator_.sum(std::span<double>(products, 3));
    const double ys = products[0], yy = products[1], ss = products[2];
    if (ys > 1e-10 * std::sqrt(yy * ss)) {
      if (int(directions_.size()) == capacity_) {
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
    // q in double on the host, every dot product summed over the ranks.
    std::vector<double> q = host(gradient);
    for (double& v : q) v = -v;
    const int count = int(directions_.size());
    std::vector<std::vector<double>> s_host, y_host;
    for (int i = 0; i < count; ++i) {
      s_host.push_back(host(steps_[i]));
      y_host.push_back(host(directions_[i]));
    }
    std::vector<double> alpha(std::size_t(count), 0.0);
    for (int i = count - 1; i >= 0; --i) {
      alpha[std::size_t(i)] = dot(s_host[i], q) * rho_[i];
      for (std::size_t e = 0; e < q.size(); ++e) q[e] -= alpha[std::size_t(i)] * y_host[i][e];
    }
    for (double& v : q) v *= hessian_diagonal_;
    for (int i = 0; i < count; ++i) {
      const double beta = dot(y_host[i], q) * rho_[i];
      for (std::size_t e = 0; e < q.size(); ++e) q[e] += (alpha[std::size_t(i)] - beta) * s_host[i][e];
    }
    std::vector<float> rounded(q.begin(), q.end());
    backend_.upload(rounded, direction_);
  }
  step_ = 0.0;  // taken in
  backend_.copy(gradient, previous_gradient_);
  if (total_elements_ == 0.0) total_elements_ = communicator_.sum(double(direction_.elements()));
  double products[2] = {backend_.dot(gradient, direction_), backend_.dot(direction_, direction_)};
  communicator_.sum(std::span<double>(products, 2));
  return {products[0], std::sqrt(products[1] / total_elements_)};
}

void TwoLoopHistory::save(OptimizerState& state) const {
  state.scalars["hessian_diagonal"] = hessian_diagonal_;
  state.scalars["history_pairs"] = double(directions_.size());
  state.vectors = {"direction", "previous_gradient"};
  for (std::size_t i = 0; i < directions_.size(); ++i) {
    state.scalars[pair_name("rho", int(i))] = rho_[i];
    state.vectors.push_back(pair_name("y", int(i)));
    state.vectors.push_back(pair_name("s", int(i)));
  }
}

const Tensor* TwoLoopHistory::vector(const std::string& name) const {
  if (name == "direction") return &direction_;
  if (name == "previous_gradient") return &previous_gradient_;
  for (std::size_t i = 0; i < directions_.size(); ++i) {
    if (name == pair_name("y", int(i))) return &directions_[i];
    if (name == pair_name("s", int(i))) return &steps_[i];
  }
  return nullptr;
}

void TwoLoopHistory::restore(const OptimizerState& state,
                             const std::function<void(const std::string& name, Tensor& vector)>& fill) {
  clear();
  hessian_diagonal_ = state.scalars.at("hessian_diagonal");
  fill("direction", direction_);
  fill("previous_gradient", previous_gradient_);
  const int pairs = int(state.scalars.at("history_pairs"));
  for (int i = 0; i < pairs; ++i) {
    directions_.push_back(take_buffer());
    steps_.push_back(take_buffer());
    fill(pair_name("y", i), directions_.back());
    fill(pair_name("s", i), steps_.back());
    rho_.push_back(state.scalars.at(pair_name("rho", i)));
  }
}

TandemHistory::TandemHistory(Backend& backend, std::unique_ptr<LbfgsHistory> leader,
                             std::unique_ptr<LbfgsHistory> shadow, std::shared_ptr<TandemRecord> record)
    : backend_(backend), leader_(std::move(leader)), shadow_(std::move(shadow)), record_(std::move(record)) {}

namespace {

double relative(double a, double b) { return a == b ? 0.0 : std::abs(a - b) / std::max(std::abs(a), 1e-300); }

}  // namespace

LbfgsHistory::Measurement TandemHistory::measure(const Tensor& gradient, double step, bool with_l1) {
  Measurement first = leader_->measure(gradient, step, with_l1);
  Measurement second = shadow_->measure(gradient, step, with_l1);
  // A trial's slope may be near zero (a flat point): compared on the scale
  // of the slope where its direction was found.
  if (step > 0.0 && start_slope_ != 0.0)
    record_->worst_slope = std::max(record_->worst_slope, std::abs(first.slope - second.slope) / std::abs(start_slope_));
  return first;
}

LbfgsHistory::Direction TandemHistory::next_direction(const Tensor& gradient, bool restart) {
  Direction first = leader_->next_direction(gradient, restart);
  Direction second = shadow_->next_direction(gradient, restart);
  std::vector<float> a(gradient.elements()), b(gradient.elements());
  backend_.download(leader_->direction(), a);
  backend_.download(shadow_->direction(), b);
  double largest = 0.0, difference = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    largest = std::max(largest, double(std::abs(a[i])));
    difference = std::max(difference, double(std::abs(a[i] - b[i])));
  }
  ++record_->directions;
  record_->worst_direction = std::max(record_->worst_direction, largest > 0.0 ? difference / largest : difference);
  record_->worst_slope = std::max(record_->worst_slope, relative(first.slope, second.slope));
  start_slope_ = first.slope;
  record_->worst_move = std::max(record_->worst_move, relative(first.move, second.move));
  return first;
}

void TandemHistory::return_to_origin() {
  leader_->return_to_origin();
  shadow_->return_to_origin();
}

void TandemHistory::restore(const OptimizerState& state,
                            const std::function<void(const std::string& name, Tensor& vector)>& fill) {
  leader_->restore(state, fill);
  shadow_->restore(state, fill);
}

}  // namespace tessera::testing
