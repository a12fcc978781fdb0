#include "support/golden.hpp"

#include <cmath>
#include <fstream>

#include "support/test_support.hpp"
#include "tessera/error.hpp"
#include "tessera/model.hpp"

namespace tessera::testing {

GoldenCase::GoldenCase(const std::string& name) {
  auto base = golden_dir() / name;
  std::ifstream manifest(base.string() + ".json");
  if (!manifest) fail("missing golden manifest ", base.string(), ".json");
  manifest_ = nlohmann::json::parse(manifest);
  std::ifstream bin(base.string() + ".bin", std::ios::binary | std::ios::ate);
  if (!bin) fail("missing golden data ", base.string(), ".bin");
  std::size_t bytes = std::size_t(bin.tellg());
  data_.resize(bytes / sizeof(float));
  bin.seekg(0);
  bin.read(reinterpret_cast<char*>(data_.data()), std::streamsize(data_.size() * sizeof(float)));
}

bool GoldenCase::has(const std::string& array) const { return manifest_["arrays"].contains(array); }

std::vector<float> GoldenCase::array(const std::string& name) const {
  if (!has(name)) fail("golden array ", name, " missing");
  const auto& entry = manifest_["arrays"][name];
  std::size_t offset = entry["offset_floats"], count = entry["count"];
  if (offset + count > data_.size()) fail("golden array ", name, " lies past the end of its file");
  return std::vector<float>(data_.begin() + offset, data_.begin() + offset + count);
}

std::vector<int> GoldenCase::shape(const std::string& name) const {
  return manifest_["arrays"][name]["shape"].get<std::vector<int>>();
}

WeightSet synthetic_weights(const std::string& architecture_name, int conv_count) {
  const Architecture& arch = architecture(architecture_name);
  WeightSet weights;
  weights.architecture = arch.name;
  weights.input = ColorTransform::identity();
  auto convs = arch.convolutions();
  int count = conv_count < 0 ? int(convs.size()) : conv_count;
  for (int k = 0; k < count; ++k) {
    const LayerSpec& spec = *convs[k];
    ConvWeights conv;
    conv.name = spec.name;
    conv.out_channels = spec.out_channels;
    conv.in_channels = spec.in_channels;
    conv.kernel_h = conv.kernel_w = spec.kernel;
    int fan_in = spec.in_channels * spec.kernel * spec.kernel;
    float a = float(std::sqrt(6.0 / fan_in));
    conv.weight = uniform_vector(1000 + k, std::size_t(fan_in) * spec.out_channels, -a, a);
    conv.bias = uniform_vector(2000 + k, spec.out_channels, 0.0f, 0.1f);
    weights.convs.push_back(std::move(conv));
  }
  return weights;
}

double max_relative_difference(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  double largest = 0.0, worst = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    largest = std::max(largest, std::abs(double(b[i])));
    worst = std::max(worst, std::abs(double(a[i]) - b[i]));
  }
  if (largest == 0.0) return worst;
  return worst / largest;
}

}  // namespace tessera::testing
