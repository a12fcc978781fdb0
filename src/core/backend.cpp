// The parts of the backend interface that are the same for every backend.
#include "tessera/backend.hpp"

#include <cmath>
#include <cstdlib>
#include <string_view>

#include "tessera/error.hpp"

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
