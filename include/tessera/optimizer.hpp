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

namespace tessera {

// What an optimiser carries from one iteration to the next, for checkpoints:
// scalars (the same on every rank) and named vectors laid out like the image
// (each rank holds its part).
struct OptimizerState {
  std::map<std::string, double> scalars;
  std::vector<std::string> vectors;  // names, in the order they are saved
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  // Updates x given the loss and gradient just evaluated at x. Returns false
  // when the optimiser cannot make progress (the render should stop).
  virtual bool update(Tensor& x, const Tensor& gradient, double loss) = 0;
  virtual std::string name() const = 0;
  // Why update() returned false.
  virtual std::string stop_reason() const { return {}; }

  virtual OptimizerState state() const = 0;
  // One of state().vectors.
  virtual const Tensor& vector(const std::string& name) const = 0;
  // Takes the scalars of `state` and fills each of its vectors through
  // `fill`; the optimiser then continues exactly where the saved one was.
  virtual void restore(const OptimizerState& state,
                       const std::function<void(const std::string& name, Tensor& vector)>& fill) = 0;
};

struct LbfgsSettings {
  int history = 100;
  float learning_rate = 1.0f;
};

// Limited-memory BFGS without line search, step for step as torch's
// optim.lbfgs (and PyTorch's LBFGS) with neural-style's settings: the first
// step is scaled by min(1, 1/|g|_1), later steps are the learning rate; a
// pair (s, y) enters the history only when y.s > 1e-10 |y| |s| (torch:
// y.s > 1e-10, which refuses every pair on large images; see lbfgs.cpp).
class Lbfgs final : public Optimizer {
 public:
  Lbfgs(Backend& backend, Communicator& communicator, Shape shape, LbfgsSettings settings);
  bool update(Tensor& x, const Tensor& gradient, double loss) override;
  std::string name() const override { return "lbfgs"; }
  std::string stop_reason() const override { return stop_reason_; }
  int history_size() const { return int(directions_.size()); }
  OptimizerState state() const override;
  const Tensor& vector(const std::string& name) const override;
  void restore(const OptimizerState& state,
               const std::function<void(const std::string& name, Tensor& vector)>& fill) override;

 private:
  double dot(const Tensor& a, const Tensor& b);
  Tensor take_buffer();

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
  std::string stop_reason_;
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
