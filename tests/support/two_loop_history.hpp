// The L-BFGS history as the textbook keeps it: the two-loop recursion over
// the vectors themselves (Nocedal and Wright, algorithm 7.4), every dot
// product a reduction of its own, carried out in double on the host and
// rounded to f32 once (as the inner-product history rounds its direction).
// The tests hold InnerProductHistory to its steps. (The same recursion in
// f32 on the device, as tessera ran it before, rounds q at every update,
// and on a ReLU network those roundings alone move an activation across
// zero within a few dozen iterations: its path parts from the exact one.)
#pragma once

#include <deque>
#include <memory>
#include <vector>

#include "tessera/optimizer.hpp"

namespace tessera::testing {

class TwoLoopHistory final : public LbfgsHistory {
 public:
  TwoLoopHistory(Backend& backend, Communicator& communicator, Shape shape, int capacity);
  Measurement measure(const Tensor& gradient, double step, bool with_l1) override;
  Direction next_direction(const Tensor& gradient, bool restart) override;
  void return_to_origin() override {}
  const Tensor& direction() const override { return direction_; }
  const Tensor& origin_gradient() const override { return previous_gradient_; }
  int pairs() const override { return int(steps_.size()); }
  void save(OptimizerState& state) const override;
  const Tensor* vector(const std::string& name) const override;
  void restore(const OptimizerState& state,
               const std::function<void(const std::string& name, Tensor& vector)>& fill) override;

 private:
  std::vector<double> host(const Tensor& t) const;
  double dot(const std::vector<double>& a, const std::vector<double>& b);
  Tensor take_buffer();
  void clear();

  Backend& backend_;
  Communicator& communicator_;
  Shape shape_;
  int capacity_;
  Tensor direction_, previous_gradient_;
  double step_ = 0.0;  // of the last measured point, for its pair
  double hessian_diagonal_ = 1.0;
  std::deque<Tensor> directions_, steps_;  // y_i = g_{i+1} - g_i, s_i = x_{i+1} - x_i
  std::deque<double> rho_;                 // 1 / (y_i . s_i)
  std::vector<Tensor> spare_;
  double total_elements_ = 0.0;
};

// Runs two histories side by side on the same gradients and steps: the
// first decides the render's steps, the second shadows it, and every
// direction, slope and move of the two is compared. Without the shadow's
// own roundings feeding back into the path (on a ReLU network a rounding
// can move an activation across zero and part two renders for good), this
// compares what each history makes of the same history.
struct TandemRecord {
  int directions = 0;
  double worst_direction = 0.0;  // max |d1 - d2| / max |d1| over every direction
  double worst_slope = 0.0;      // of next_direction's and measure's slopes, relative
  double worst_move = 0.0;
};

class TandemHistory final : public LbfgsHistory {
 public:
  TandemHistory(Backend& backend, std::unique_ptr<LbfgsHistory> leader, std::unique_ptr<LbfgsHistory> shadow,
                std::shared_ptr<TandemRecord> record);
  Measurement measure(const Tensor& gradient, double step, bool with_l1) override;
  Direction next_direction(const Tensor& gradient, bool restart) override;
  void return_to_origin() override;
  const Tensor& direction() const override { return leader_->direction(); }
  const Tensor& origin_gradient() const override { return leader_->origin_gradient(); }
  int pairs() const override { return leader_->pairs(); }
  void save(OptimizerState& state) const override { leader_->save(state); }
  const Tensor* vector(const std::string& name) const override { return leader_->vector(name); }
  void restore(const OptimizerState& state,
               const std::function<void(const std::string& name, Tensor& vector)>& fill) override;

 private:
  Backend& backend_;
  std::unique_ptr<LbfgsHistory> leader_, shadow_;
  std::shared_ptr<TandemRecord> record_;
  double start_slope_ = 0.0;
};

}  // namespace tessera::testing
