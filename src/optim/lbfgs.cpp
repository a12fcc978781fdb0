#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <span>

#include "tessera/error.hpp"
#include "tessera/optimizer.hpp"

namespace tessera {

Lbfgs::Lbfgs(Backend& backend, Communicator& communicator, Shape shape, LbfgsSettings settings,
             std::unique_ptr<LbfgsHistory> history)
    : backend_(backend), settings_(settings), history_(std::move(history)) {
  if (settings_.history < 1) fail("L-BFGS history must be at least 1, got ", settings_.history);
  if (!(settings_.learning_rate > 0.0f)) fail("L-BFGS learning rate must be positive");
  if (!history_) history_ = std::make_unique<InnerProductHistory>(backend, communicator, shape, settings_.history);
  if (settings_.line_search != LineSearch::none)
    origin_ = backend_.allocate(shape, Layout::planar, Backend::Contents::unset);
}

bool Lbfgs::update(Tensor& x, const Tensor& gradient, double /*loss*/) {
  ++iteration_;
  const bool first = iteration_ == 1;
  // The gradient comes from the caller's evaluation, at step_ along the
  // last direction.
  const LbfgsHistory::Measurement measured = history_->measure(gradient, first ? 0.0 : double(step_), first);
  const LbfgsHistory::Direction direction = history_->next_direction(gradient, first);
  if (first) {
    step_ = float(std::min(1.0, measured.l1 > 0.0 ? 1.0 / measured.l1 : 1.0) * settings_.learning_rate);
  } else {
    step_ = settings_.learning_rate;
  }
  // neural-style runs with tolX = -1: it stops only when the direction
  // climbs (g.d > 1), which in practice means the gradient vanished or broke.
  if (!(direction.slope <= 1.0)) {
    stop_reason_ = std::isfinite(direction.slope) ? "L-BFGS found no descent direction"
                                                  : "the gradient is not finite";
    return false;
  }
  backend_.axpy(step_, history_->direction(), x);
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
  // The first iteration's gradient, and the first after a restore, come
  // from the caller; the others from this search's last trial.
  if (!measured_) history_->measure(gradient, fresh ? 0.0 : double(step_), false);
  measured_ = true;
  restart_ = false;
  LbfgsHistory::Direction found = history_->next_direction(gradient, fresh);
  double slope0 = found.slope, move = found.move;  // move: the RMS change of x for a unit step
  if (!std::isfinite(slope0) || !std::isfinite(loss)) {
    stop_reason_ = "the gradient is not finite";
    report.progressed = false;
    return report;
  }
  if (!(slope0 < 0.0) && !fresh) {
    // The history's curvature no longer describes the loss: start again
    // from the steepest descent.
    found = history_->next_direction(gradient, true);
    fresh = true;
    slope0 = found.slope;
    move = found.move;
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
  const Tensor& direction = history_->direction();
  auto try_step = [&](double step) {
    backend_.copy(origin_, x);
    backend_.axpy(float(step), direction, x);
    Trial trial;
    trial.t = step;
    trial.loss = evaluate(x, gradient);
    // The history's pair takes the step as the image took it, in f32.
    trial.slope = history_->measure(gradient, double(float(step)), false).slope;
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
    backend_.copy(history_->origin_gradient(), gradient);
    history_->return_to_origin();
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
    backend_.axpy(float(accepted.t), direction, x);
    loss = evaluate(x, gradient);
    history_->measure(gradient, double(float(accepted.t)), false);
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
  state.scalars["restart"] = restart_ ? 1.0 : 0.0;
  state.scalars["last_move"] = last_move_;
  state.scalars["last_decrease"] = last_decrease_;
  state.scalars["last_fresh"] = last_fresh_ ? 1.0 : 0.0;
  if (iteration_ > 0) history_->save(state);
  return state;
}

const Tensor& Lbfgs::vector(const std::string& name) const {
  if (const Tensor* v = history_->vector(name)) return *v;
  fail("internal: L-BFGS has no vector '", name, "'");
}

void Lbfgs::restore(const OptimizerState& state,
                    const std::function<void(const std::string& name, Tensor& vector)>& fill) {
  const double iteration = required(state, "iteration");
  if (!(iteration >= 0 && iteration < 1e9 && iteration == std::floor(iteration)))
    fail("L-BFGS state: iteration ", iteration, " is not a count");
  iteration_ = int(iteration);
  step_ = float(required(state, "step"));
  // The line search's memory; absent from checkpoints written without it.
  auto optional = [&](const char* name) {
    auto it = state.scalars.find(name);
    return it == state.scalars.end() ? 0.0 : it->second;
  };
  restart_ = optional("restart") != 0.0;
  last_move_ = optional("last_move");
  last_decrease_ = optional("last_decrease");
  last_fresh_ = optional("last_fresh") != 0.0;
  // The caller evaluates the restored image: the history measures it anew.
  measured_ = false;
  if (iteration_ > 0) history_->restore(state, fill);
}

}  // namespace tessera
