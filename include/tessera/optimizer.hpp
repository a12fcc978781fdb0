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

// How L-BFGS keeps its history of steps and gradient changes and turns it
// into a direction (-H g, H the inverse Hessian the history describes).
// Lbfgs's steps and line search are the same whatever keeps the history.
class LbfgsHistory {
 public:
  struct Measurement {
    double slope = 0.0;  // g . d along the current direction (when `step` > 0)
    double l1 = 0.0;     // |g|_1 over every rank (when asked for)
  };
  struct Direction {
    double slope = 0.0;  // g . d
    double move = 0.0;   // the root mean square of d over every rank's values
  };
  virtual ~LbfgsHistory() = default;
  // The gradient was just evaluated at the point `step` along direction()
  // from where that direction was found (step 0: a point with no step to
  // learn from: the first, or one after which the history is cleared).
  // A collective call.
  virtual Measurement measure(const Tensor& gradient, double step, bool with_l1) = 0;
  // The gradient last measured is where the next step starts: takes in the
  // step that led there (unless `restart`, which clears the history) and
  // sets direction() = -H gradient.
  virtual Direction next_direction(const Tensor& gradient, bool restart) = 0;
  // The line search found no lower loss: the point where the direction was
  // found, and its gradient (origin_gradient()), are the current ones again.
  virtual void return_to_origin() = 0;
  virtual const Tensor& direction() const = 0;
  virtual const Tensor& origin_gradient() const = 0;
  virtual int pairs() const = 0;

  // Adds its scalars, arrays and vector names to `state`.
  virtual void save(OptimizerState& state) const = 0;
  virtual const Tensor* vector(const std::string& name) const = 0;
  virtual void restore(const OptimizerState& state,
                       const std::function<void(const std::string& name, Tensor& vector)>& fill) = 0;
};

// The history as vectors and their inner products (the vector-free L-BFGS of
// Chen, Wang and Zhou, "Large-scale L-BFGS using MapReduce", NeurIPS 2014):
// the pairs s_i, y_i as the two-loop recursion keeps them, and a matrix of
// the inner products of every two history vectors. measure() takes the new
// gradient's products with the history (and those of the pair it would
// make) in one pass over the history and one reduction; the recursion then
// runs on those numbers alone, and the direction is one linear combination
// of the history and the gradient. Two collectives an iteration (the
// objective's and this) at any history length, where the recursion over
// vectors made 2 x history + 4.
class InnerProductHistory final : public LbfgsHistory {
 public:
  InnerProductHistory(Backend& backend, Communicator& communicator, Shape shape, int capacity);
  Measurement measure(const Tensor& gradient, double step, bool with_l1) override;
  Direction next_direction(const Tensor& gradient, bool restart) override;
  void return_to_origin() override;
  const Tensor& direction() const override { return direction_; }
  const Tensor& origin_gradient() const override { return origin_gradient_; }
  int pairs() const override { return int(pairs_.size()); }
  void save(OptimizerState& state) const override;
  const Tensor* vector(const std::string& name) const override;
  void restore(const OptimizerState& state,
               const std::function<void(const std::string& name, Tensor& vector)>& fill) override;

 private:
  struct Pair {
    Tensor s, y;
  };
  // The last measured gradient g's products. With a pair (s = step x
  // direction, y = g - origin gradient): rows s, y, g against the history
  // [s_0, y_0, s_1, ...] and against s, y, g; without: g alone.
  struct Point {
    bool has_pair = false;
    int rows = 1;
    std::vector<double> history;  // rows x (2 pairs), row-major
    double mutual[3][3] = {};     // among s, y, g (g alone at [0][0] without a pair)
  };
  Tensor take_buffer();
  void clear();
  void drop_oldest();
  void take_in_pair();
  void keep_gradient_row();
  void recompute_products();

  Backend& backend_;
  Communicator& communicator_;
  Shape shape_;
  int capacity_;
  Tensor direction_, origin_gradient_, pending_s_, pending_y_;
  bool has_origin_ = false;
  std::deque<Pair> pairs_;
  std::vector<double> products_;  // (2 pairs)^2 over [s_0, y_0, s_1, y_1, ...]
  double hessian_diagonal_ = 1.0;
  Point point_;
  double origin_gg_ = 0.0;  // g . g at the origin, for return_to_origin()
  double total_elements_ = 0.0;
  std::vector<Tensor> spare_;
};

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
// refuses every pair on large images; see inner_product_history.cpp).
//
// With the strong Wolfe line search (step()), each iteration searches along
// its direction for a step that lowers the loss enough (Armijo, c1 = 1e-4)
// and flattens the slope enough (|g.d| <= 0.9 |g0.d|), by extrapolation and
// then cubic interpolation inside a bracket (Nocedal and Wright, Numerical
// Optimization, algorithms 3.5 and 3.6), at most 25 evaluations. The first
// trial is in image units (see LbfgsSettings). A search that finds no lower
// loss clears the history and starts again from the steepest descent.
//
// The history is an InnerProductHistory unless another is given.
class Lbfgs final : public Optimizer {
 public:
  Lbfgs(Backend& backend, Communicator& communicator, Shape shape, LbfgsSettings settings,
        std::unique_ptr<LbfgsHistory> history = nullptr);
  bool update(Tensor& x, const Tensor& gradient, double loss) override;
  StepReport step(Tensor& x, Tensor& gradient, double& loss, const Evaluate& evaluate) override;
  std::string name() const override { return "lbfgs"; }
  std::string stop_reason() const override { return stop_reason_; }
  bool converged() const override { return converged_; }
  int history_size() const { return history_->pairs(); }
  OptimizerState state() const override;
  const Tensor& vector(const std::string& name) const override;
  void restore(const OptimizerState& state,
               const std::function<void(const std::string& name, Tensor& vector)>& fill) override;

 private:
  Backend& backend_;
  LbfgsSettings settings_;
  std::unique_ptr<LbfgsHistory> history_;
  int iteration_ = 0;
  float step_ = 0.0f;                      // along the last direction, to the current point
  bool measured_ = false;                  // the history has measured the current gradient
  Tensor origin_;                          // x where the line search started
  bool restart_ = false;                   // the history was cleared: start afresh
  double last_move_ = 0.0;                 // RMS of the last step taken
  double last_decrease_ = 0.0;             // of the loss, by the last step
  bool last_fresh_ = false;                // the last step was a steepest descent
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
