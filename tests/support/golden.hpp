// Reads the PyTorch golden files (tests/golden/README.md) and rebuilds their
// deterministic inputs.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tessera/weights.hpp"

namespace tessera::testing {

class GoldenCase {
 public:
  explicit GoldenCase(const std::string& name);  // loads <golden>/<name>.json/.bin
  const nlohmann::json& manifest() const { return manifest_; }
  bool has(const std::string& array) const;
  std::vector<float> array(const std::string& name) const;
  std::vector<int> shape(const std::string& name) const;

 private:
  nlohmann::json manifest_;
  std::vector<float> data_;
};

// The synthetic weights of the golden cases: conv k has weights
// uniform_at(1000 + k, i, -a, a), a = sqrt(6 / fan_in), and biases
// uniform_at(2000 + k, o, 0, 0.1); `conv_count` limits how many convolutions.
WeightSet synthetic_weights(const std::string& architecture_name, int conv_count = -1);

// Largest |a - b| relative to the largest |b| (0 when both are all zero).
double max_relative_difference(const std::vector<float>& a, const std::vector<float>& b);

}  // namespace tessera::testing
