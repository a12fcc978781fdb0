#include "tessera/tensor.hpp"

#include <cmath>
#include <cstdlib>
#include <string_view>

#include "tessera/backend.hpp"
#include "tessera/error.hpp"

namespace tessera {

Tensor Tensor::view(Shape shape, Layout layout) const {
  if (shape.elements() > capacity_)
    fail("internal: view of ", shape.describe(), " exceeds a buffer of ", capacity_, " floats");
  return Tensor(shape, layout, storage_, capacity_, type_);
}

Tensor Tensor::slice(std::size_t offset, Shape shape) const {
  if (type_ != DataType::f32 || layout_ != Layout::planar) fail("internal: slices are of planar f32 tensors");
  if (offset + shape.elements() > capacity_)
    fail("internal: slice [", offset, ", ", offset + shape.elements(), ") beyond ", capacity_, " floats");
  // The aliasing constructor keeps the whole buffer alive through the slice.
  return Tensor(shape, Layout::planar, std::shared_ptr<float>(storage_, storage_.get() + offset), shape.elements());
}

}  // namespace tessera

namespace tessera {

Precision parse_precision(const std::string& text) {
  if (text == "f32") return Precision::f32;
  if (text == "bf16") return Precision::bf16;
  fail("unknown precision '", text, "' (f32 or bf16)");
}

float AdamState::step_size() const {
  const double t = double(step + 1);
  const double correction1 = 1.0 - std::pow(double(beta1), t);
  const double correction2 = 1.0 - std::pow(double(beta2), t);
  return float(learning_rate * std::sqrt(correction2) / correction1);
}

const char* precision_name(Precision precision) { return precision == Precision::bf16 ? "bf16" : "f32"; }

bool poison_unset_buffers() {
  static const bool poison = [] {
    const char* value = std::getenv("TESSERA_POISON_BUFFERS");
    return value && *value && std::string_view(value) != "0";
  }();
  return poison;
}

}  // namespace tessera
