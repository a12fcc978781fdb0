#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <span>

#include "tessera/error.hpp"
#include "tessera/optimizer.hpp"

namespace tessera {

Lbfgs::Lbfgs(Backend& backend, Communicator& communicator, Shape shape, LbfgsSettings settings)
    : backend_(backend), communicator_(communicator), shape_(shape), settings_(settings) {
  if (settings_.history < 1) fail("L-BFGS history must be at least 1, got ", settings_.history);
  if (!(settings_.learning_rate > 0.0f)) fail("L-BFGS learning rate must be positive");
  direction_ = backend_.allocate(shape_, Layout::planar, Backend::Contents::unset);
  previous_gradient_ = backend_.allocate(shape_, Layout::planar, Backend::Contents::unset);
  if (settings_.line_search != LineSearch::none)
    origin_ = backend_.allocate(shape_, Layout::planar, Backend::Contents::unset);
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
  return backend_.allocate(shape_, Layout::planar, Backend::Contents::unset);
}

void Lbfgs::clear_history() {
  while (!directions_.empty()) {
    spare_.push_back(std::move(directions_.back()));
    spare_.push_back(std::move(steps_.back()));
    directions_.pop_back();
    steps_.pop_back();
  }
  rho_.clear();
  hessian_diagonal_ = 1.0;
}

void Lbfgs::slope_and_move(const Tensor& gradient, double& slope, double& move) {
  if (total_elements_ == 0.0) total_elements_ = communicator_.sum(double(direction_.elements()));
  double products[2] = {backend_.dot(gradient, direction_), backend_.dot(direction_, direction_)};
  communicator_.sum(std::span<double>(products, 2));  // one reduction for both
  slope = products[0];
  move = std::sqrt(products[1] / total_elements_);
}

void Lbfgs::find_direction(const Tensor& gradient) {
  if (iteration_ == 1 || restart_) {
    if (restart_) clear_history();
    restart_ = false;
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
}

bool Lbfgs::update(Tensor& x, const Tensor& gradient, double /*loss*/) {
  ++iteration_;
  find_direction(gradient);
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

// The minimiser of the cubic through (a, fa, ga) and (b, fb, gb) (values
// and slopes along the search direction), kept inside [low, high]; the
// middle of that interval where the cubic has no minimiser or the values
// are not finite (Nocedal and Wright, equation 3.59).
double cubic_minimiser(double a, double fa, double ga, double b, double fb, double gb, double low, double high) {
  if (low > high) std::swap(low, high);
  const double middle = 0.5 * (low + high);
  if (!std::isfinite(fa) || !std::isfinite(fb) || !std::isfinite(ga) || !std::isfinite(gb) || a == b) return middle;
  const double d1 = ga + gb - 3.0 * (fa - fb) / (a - b);
  const double square = d1 * d1 - ga * gb;
  if (!(square >= 0.0)) return middle;
  const double d2 = std::copysign(std::sqrt(square), b - a);
  const double denominator = gb - ga + 2.0 * d2;
  if (denominator == 0.0) return middle;
  const double t = b - (b - a) * (gb + d2 - d1) / denominator;
  if (!std::isfinite(t)) return middle;
  return std::clamp(t, low, high);
}

struct Trial {
  double t = 0.0, loss = 0.0, slope = 0.0;  // slope: g(x0 + t d) . d
};

}  // namespace

StepReport Lbfgs::step(Tensor& x, Tensor& gradient, double& loss, const Evaluate& evaluate) {
  if (settings_.line_search == LineSearch::none) return Optimizer::step(x, gradient, loss, evaluate);
  StepReport report;
  ++iteration_;
  bool fresh = iteration_ == 1 || restart_;
  find_direction(gradient);
  double slope0 = 0.0, move = 0.0;  // move: the RMS change of x for a unit step
  slope_and_move(gradient, slope0, move);
  if (!std::isfinite(slope0) || !std::isfinite(loss)) {
    stop_reason_ = "the gradient is not finite";
    report.progressed = false;
    return report;
  }
  if (!(slope0 < 0.0) && !fresh) {
    // The history's curvature no longer describes the loss: start again
    // from the steepest descent.
    restart_ = true;
    find_direction(gradient);
    fresh = true;
    slope_and_move(gradient, slope0, move);
  }
  if (!(slope0 < 0.0)) {
    stop_reason_ = "converged: the gradient vanished, so nothing lowers the loss from here";
    converged_ = true;
    report.progressed = false;
    return report;
  }

  double t = fresh && settings_.first_move > 0.0 ? settings_.first_move / move : settings_.learning_rate;
  // The first trial moves the image at most max_move, and at most four times
  // as far as the last step did: a direction from little history can be
  // badly scaled, and a trial far beyond the loss's valley costs evaluations
  // (and on a quartic loss, reaches enormous values).
  double longest_move = settings_.max_move > 0.0 ? settings_.max_move : std::numeric_limits<double>::infinity();
  // Right after a steepest-descent step, a quarter as far: that step ran
  // down to the floor of a valley whose walls (on a quartic loss, such as
  // the style loss from noise) are far steeper there than the one
  // curvature pair measured over the whole step says.
  if (!fresh && last_move_ > 0.0) longest_move = std::min(longest_move, (last_fresh_ ? 0.25 : 4.0) * last_move_);
  t = std::min(t, longest_move / move);
  // And no further than where a quadratic with this slope would lower the
  // loss by as much as the last step did (Nocedal and Wright, equation
  // 3.60): after a long first step, the curvature measured over it says
  // little about the valley it ends in, and t = 1 can be far too long.
  if (!fresh && last_decrease_ > 0.0) t = std::min(t, 2.02 * last_decrease_ / -slope0);
  backend_.copy(x, origin_);

  constexpr double c1 = 1e-4, c2 = 0.9;
  constexpr int most_evaluations = 25;
  const double f0 = loss;
  int evaluated = 0;
  Trial last;  // the point x and gradient now hold
  auto try_step = [&](double step) {
    backend_.copy(origin_, x);
    backend_.axpy(float(step), direction_, x);
    Trial trial;
    trial.t = step;
    trial.loss = evaluate(x, gradient);
    trial.slope = dot(gradient, direction_);
    if (!std::isfinite(trial.loss) || !std::isfinite(trial.slope)) {
      trial.loss = std::numeric_limits<double>::infinity();
      trial.slope = std::numeric_limits<double>::quiet_NaN();
    }
    ++evaluated;
    report.losses.push_back(trial.loss);
    last = trial;
    return trial;
  };
  auto sufficient = [&](const Trial& trial) { return trial.loss <= f0 + c1 * trial.t * slope0; };
  auto flat_enough = [&](const Trial& trial) { return std::abs(trial.slope) <= -c2 * slope0; };

  // Bracketing: grow the step until it overshoots, or the slope flattens.
  Trial previous{0.0, f0, slope0};
  Trial low, high;  // low: the best point that lowers the loss enough
  bool bracketed = false, done = false;
  Trial accepted{0.0, f0, slope0};
  while (evaluated < most_evaluations) {
    Trial trial = try_step(t);
    if (!sufficient(trial) || (evaluated > 1 && trial.loss >= previous.loss)) {
      low = previous;
      high = trial;
      bracketed = true;
      break;
    }
    if (flat_enough(trial)) {
      accepted = trial;
      done = true;
      break;
    }
    if (trial.slope >= 0.0) {
      low = trial;
      high = previous;
      bracketed = true;
      break;
    }
    accepted = trial;  // lowers the loss enough, if nothing better comes
    // Grow the step between two and five times the last interval: less
    // wastes evaluations on a slope that is still steep, more overshoots.
    const double interval = trial.t - previous.t;
    const double shortest = trial.t + interval, longest = trial.t + 4.0 * interval;
    const double next = cubic_minimiser(previous.t, previous.loss, previous.slope, trial.t, trial.loss, trial.slope,
                                        shortest, longest);
    previous = trial;
    t = next;
  }

  // Zoom: shrink the bracket [low, high] around a point that satisfies both.
  while (bracketed && !done && evaluated < most_evaluations) {
    const double width = std::abs(high.t - low.t);
    if (width <= 1e-7 * std::max(std::abs(high.t), std::abs(low.t))) break;  // beyond what f32 resolves
    double next = cubic_minimiser(low.t, low.loss, low.slope, high.t, high.loss, high.slope, low.t, high.t);
    // Not too near either end, so the bracket keeps shrinking.
    const double lo_end = std::min(low.t, high.t), hi_end = std::max(low.t, high.t);
    next = std::clamp(next, lo_end + 0.1 * width, hi_end - 0.1 * width);
    Trial trial = try_step(next);
    if (!sufficient(trial) || trial.loss >= low.loss) {
      high = trial;
    } else {
      if (flat_enough(trial)) {
        accepted = trial;
        done = true;
        break;
      }
      if (trial.slope * (high.t - low.t) >= 0.0) high = low;
      low = trial;
    }
  }
  if (!done && bracketed && low.t > 0.0 && low.loss < accepted.loss) accepted = low;

  report.evaluations = evaluated;
  if (accepted.t == 0.0) {
    // No step lowered the loss: back to the start.
    backend_.copy(origin_, x);
    backend_.copy(previous_gradient_, gradient);
    loss = f0;
    report.evaluated_here = true;
    if (fresh) {
      stop_reason_ = "converged: no step along the steepest descent lowers the loss (a minimum at float precision)";
      converged_ = true;
      report.progressed = false;
      return report;
    }
    restart_ = true;  // next iteration: steepest descent, history cleared
    step_ = 0.0f;
    last_decrease_ = 0.0;
    return report;
  }
  if (last.t != accepted.t) {
    backend_.copy(origin_, x);
    backend_.axpy(float(accepted.t), direction_, x);
    loss = evaluate(x, gradient);
    ++report.evaluations;
    report.losses.push_back(loss);
  } else {
    loss = accepted.loss;
  }
  step_ = float(accepted.t);
  last_move_ = accepted.t * move;
  last_decrease_ = f0 - loss;
  last_fresh_ = fresh;
  report.evaluated_here = true;
  return report;
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
  state.scalars["restart"] = restart_ ? 1.0 : 0.0;
  state.scalars["last_move"] = last_move_;
  state.scalars["last_decrease"] = last_decrease_;
  state.scalars["last_fresh"] = last_fresh_ ? 1.0 : 0.0;
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
  clear_history();
  hessian_diagonal_ = required(state, "hessian_diagonal");
  // The line search's memory; absent from checkpoints written without it.
  auto optional = [&](const char* name) {
    auto it = state.scalars.find(name);
    return it == state.scalars.end() ? 0.0 : it->second;
  };
  restart_ = optional("restart") != 0.0;
  last_move_ = optional("last_move");
  last_decrease_ = optional("last_decrease");
  last_fresh_ = optional("last_fresh") != 0.0;
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
