// Optimisers over the image, as neural-style runs them: one iteration is one
// evaluation of the objective followed by one update of the image.
// Vectors live on the backend; every global quantity (dot products, norms)
// goes through the communicator, so each rank can hold only its own pixels.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tessera/backend.hpp"
#include "tessera/communicator.hpp"
#include "tessera/render_state.hpp"

namespace tessera {

// The objective at x: returns the loss and writes the gradient. A collective
// call: every rank passes its own part of x.
using Evaluate = std::function<double(const Tensor& x, Tensor& gradient)>;

struct StepReport {
  bool progressed = true;       // false: the render should stop (stop_reason())
  int evaluations = 0;          // of the objective, made by the optimiser itself
  bool evaluated_here = false;  // the loss and gradient are now those at the new x
  std::vector<double> losses;   // of those evaluations, in order
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  // Updates x given the loss and gradient just evaluated at x. Returns false
  // when the optimiser cannot make progress (the render should stop).
  virtual bool update(Tensor& x, const Tensor& gradient, double loss) = 0;
  // One iteration from x, where `loss` and `gradient` were just evaluated.
  // An optimiser that searches along its direction evaluates the objective
  // through `evaluate` and leaves `loss` and `gradient` at the x it accepts
  // (evaluated_here); the others make one update().
  virtual StepReport step(Tensor& x, Tensor& gradient, double& loss, const Evaluate& evaluate) {
    (void)evaluate;
    StepReport report;
    report.progressed = update(x, gradient, loss);
    return report;
  }
  virtual std::string name() const = 0;
  // Why update() returned false, and whether that is because it reached a
  // minimum (nothing lowers the loss from here) rather than a failure.
  virtual std::string stop_reason() const { return {}; }
  virtual bool converged() const { return false; }

  virtual OptimizerState state() const = 0;
  // One of state().vectors.
  virtual const Tensor& vector(const std::string& name) const = 0;
  // Takes the scalars of `state` and fills each of its vectors through
  // `fill`; the optimiser then continues exactly where the saved one was.
  virtual void restore(const OptimizerState& state,
                       const std::function<void(const std::string& name, Tensor& vector)>& fill) = 0;
};

enum class LineSearch { none, strong_wolfe };

struct LbfgsSettings {
  int history = 100;
  float learning_rate = 1.0f;
  LineSearch line_search = LineSearch::none;
  // With the line search, in the input domain's units: the first step (and
  // the first after the history is cleared) moves the image by first_move
  // (root mean square over its values), and no search starts with a trial
  // that moves it by more than max_move.
  double first_move = 0.0;
  double max_move = 0.0;
};

// Limited-memory BFGS.
//
// Without line search, step for step as torch's optim.lbfgs (and PyTorch's
// LBFGS) with neural-style's settings: the first step is scaled by
// min(1, 1/|g|_1), later steps are the learning rate; a pair (s, y) enters
// the history only when y.s > 1e-10 |y| |s| (torch: y.s > 1e-10, which
// refuses every pair on large images; see lbfgs.cpp).
//
// With the strong Wolfe line search (step()), each iteration searches along
// its direction for a step that lowers the loss enough (Armijo, c1 = 1e-4)
// and flattens the slope enough (|g.d| <= 0.9 |g0.d|), by extrapolation and
// then cubic interpolation inside a bracket (Nocedal and Wright, Numerical
// Optimization, algorithms 3.5 and 3.6), at most 25 evaluations. The first
// trial is in image units (see LbfgsSettings). A search that finds no lower
// loss clears the history and starts again from the steepest descent.
class Lbfgs final : public Optimizer {
 public:
  Lbfgs(Backend& backend, Communicator& communicator, Shape shape, LbfgsSettings settings);
  bool update(Tensor& x, const Tensor& gradient, double loss) override;
  StepReport step(Tensor& x, Tensor& gradient, double& loss, const Evaluate& evaluate) override;
  std::string name() const override { return "lbfgs"; }
  std::string stop_reason() const override { return stop_reason_; }
  bool converged() const override { return converged_; }
  int history_size() const { return int(directions_.size()); }
  OptimizerState state() const override;
  const Tensor& vector(const std::string& name) const override;
  void restore(const OptimizerState& state,
               const std::function<void(const std::string& name, Tensor& vector)>& fill) override;

 private:
  double dot(const Tensor& a, const Tensor& b);
  Tensor take_buffer();
  // Takes in the step just made (unless the history was cleared) and sets
  // direction_ = -H gradient; keeps the gradient for the next pair.
  void find_direction(const Tensor& gradient);
  void clear_history();
  // The slope of the loss along direction_ (g.d) and the RMS over every
  // rank's values of direction_, in one reduction.
  void slope_and_move(const Tensor& gradient, double& slope, double& move);

  Backend& backend_;
  Communicator& communicator_;
  Shape shape_;
  LbfgsSettings settings_;
  int iteration_ = 0;
  Tensor direction_, previous_gradient_;
  float step_ = 0.0f;
  double hessian_diagonal_ = 1.0;
  std::deque<Tensor> directions_, steps_;  // y_i = g_{i+1} - g_i, s_i = x_{i+1} - x_i
  std::deque<double> rho_;                 // 1 / (y_i . s_i)
  std::vector<double> alpha_;
  std::vector<Tensor> spare_;              // recycled history buffers
  Tensor origin_;                          // x where the line search started
  bool restart_ = false;                   // the history was cleared: start afresh
  double last_move_ = 0.0;                 // RMS of the last step taken
  double last_decrease_ = 0.0;             // of the loss, by the last step
  bool last_fresh_ = false;                // the last step was a steepest descent
  double total_elements_ = 0.0;            // of x, over every rank
  std::string stop_reason_;
  bool converged_ = false;
};

struct AdamSettings {
  float learning_rate = 10.0f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float epsilon = 1e-8f;
};

class Adam final : public Optimizer {
 public:
  Adam(Backend& backend, Shape shape, AdamSettings settings);
  bool update(Tensor& x, const Tensor& gradient, double loss) override;
  std::string name() const override { return "adam"; }
  OptimizerState state() const override;
  const Tensor& vector(const std::string& name) const override;
  void restore(const OptimizerState& state,
               const std::function<void(const std::string& name, Tensor& vector)>& fill) override;

 private:
  Backend& backend_;
  AdamState state_;
  Tensor first_moment_, second_moment_;
};

}  // namespace tessera
