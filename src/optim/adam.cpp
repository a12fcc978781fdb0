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

}  // namespace tessera
