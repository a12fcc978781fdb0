#include <cmath>

#include "tessera/error.hpp"
#include "tessera/optimizer.hpp"

namespace tessera {

Adam::Adam(Backend& backend, Shape shape, AdamSettings settings) : backend_(backend) {
  if (!(settings.learning_rate > 0.0f)) fail("Adam learning rate must be positive");
  state_.learning_rate = settings.learning_rate;
  state_.beta1 = settings.beta1;
  state_.beta2 = settings.beta2;
  state_.epsilon = settings.epsilon;
  first_moment_ = backend_.allocate(shape, Layout::planar);
  second_moment_ = backend_.allocate(shape, Layout::planar);
}

bool Adam::update(Tensor& x, const Tensor& gradient, double loss) {
  if (!std::isfinite(loss)) return false;
  backend_.adam_update(x, gradient, first_moment_, second_moment_, state_);
  ++state_.step;
  return true;
}

OptimizerState Adam::state() const {
  OptimizerState state;
  state.scalars["step"] = double(state_.step);
  state.vectors = {"first_moment", "second_moment"};
  return state;
}

const Tensor& Adam::vector(const std::string& name) const {
  if (name == "first_moment") return first_moment_;
  if (name == "second_moment") return second_moment_;
  fail("internal: Adam has no vector '", name, "'");
}

void Adam::restore(const OptimizerState& state,
                   const std::function<void(const std::string& name, Tensor& vector)>& fill) {
  auto step = state.scalars.find("step");
  if (step == state.scalars.end()) fail("Adam state: 'step' is missing");
  if (!(step->second >= 0 && step->second < 1e15 && step->second == std::floor(step->second)))
    fail("Adam state: step ", step->second, " is not a count");
  state_.step = std::int64_t(step->second);
  fill("first_moment", first_moment_);
  fill("second_moment", second_moment_);
}

}  // namespace tessera
