#include <cmath>
#include <random>

#include "tessera/model.hpp"

namespace tessera {

WeightSet random_weights(const Architecture& arch, std::uint64_t seed, int conv_count) {
  // He-normal weights (std sqrt(2 / fan_in)) keep activations at the input's
  // scale through every ReLU, so losses stay finite at any depth; biases
  // U(0, 0.1) as torch_gatys.py draws them. The cost of a render does not
  // depend on the values.
  std::mt19937_64 generator(seed);
  WeightSet weights;
  weights.architecture = arch.name;
  weights.input = ColorTransform::caffe();
  weights.provenance["source_format"] = "random (seed " + std::to_string(seed) + ")";
  auto convs = arch.convolutions();
  int count = conv_count < 0 ? int(convs.size()) : std::min<int>(conv_count, int(convs.size()));
  for (int k = 0; k < count; ++k) {
    const LayerSpec& spec = *convs[k];
    ConvWeights conv;
    conv.name = spec.name;
    conv.out_channels = spec.out_channels;
    conv.in_channels = spec.in_channels;
    conv.kernel_h = conv.kernel_w = spec.kernel;
    const int fan_in = spec.in_channels * spec.kernel * spec.kernel;
    std::normal_distribution<float> normal(0.0f, std::sqrt(2.0f / float(fan_in)));
    std::uniform_real_distribution<float> uniform(0.0f, 0.1f);
    conv.weight.resize(std::size_t(fan_in) * spec.out_channels);
    for (auto& w : conv.weight) w = normal(generator);
    conv.bias.resize(spec.out_channels);
    for (auto& b : conv.bias) b = uniform(generator);
    weights.convs.push_back(std::move(conv));
  }
  return weights;
}

}  // namespace tessera
