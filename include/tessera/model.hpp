// Backbones as layer lists (VGG-19, VGG-16, NIN), with Caffe layer names.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tessera/weights.hpp"

// (MapSize avoids including tensor.hpp into model.hpp.)

namespace tessera {

enum class LayerKind { conv, relu, max_pool, avg_pool };
enum class Pooling { max, avg };

struct LayerSpec {
  LayerKind kind = LayerKind::conv;
  std::string name;  // conv1_1, relu1_1, pool1, ... (Caffe names)
  int in_channels = 0;
  int out_channels = 0;
  int kernel = 1;
  int stride = 1;
  int pad = 0;
  bool ceil_mode = false;  // pooling output size rounds up (NIN)
};

struct Architecture {
  std::string name;              // "vgg19", "vgg16", "nin"
  std::vector<LayerSpec> layers;  // in order; pooling layers use LayerKind::max_pool
  std::string default_content_layer;
  std::vector<std::string> default_style_layers;

  std::vector<const LayerSpec*> convolutions() const;
  // Index into `layers` of the named layer, or -1.
  int index_of(std::string_view layer_name) const;
};

const Architecture& architecture(std::string_view name);  // throws for unknown names
std::vector<std::string> architecture_names();

// Receptive field of a layer's output, in input pixels, and its cumulative stride.
struct ReceptiveField {
  int size_px = 1;
  int stride_px = 1;
};
ReceptiveField receptive_field(const Architecture& arch, std::string_view layer_name);

// The size of a layer's output for an input of height x width (convolutions
// round down; pools round down, or up as Caffe does where ceil_mode is set).
// Every backend must produce these sizes. Returns channels 0 when the input
// is too small for some layer on the way.
struct MapSize {
  int channels = 0, height = 0, width = 0;
};
MapSize feature_map_size(const Architecture& arch, std::string_view layer_name, int height, int width);

// Checks that `weights` match `arch` (names, shapes, order, a prefix of its
// convolutions) and throws a tessera::Error naming the first mismatch.
void validate_weights(const Architecture& arch, const WeightSet& weights);

// The deepest layer (relu or pool after the last convolution the weights cover)
// that `weights` can compute.
std::string deepest_available_layer(const Architecture& arch, const WeightSet& weights);

// Seeded random weights for the whole backbone (or its first conv_count
// convolutions), Caffe input convention: for benchmarks and tests, where the
// values do not matter but must keep the losses finite.
WeightSet random_weights(const Architecture& arch, std::uint64_t seed, int conv_count = -1);

}  // namespace tessera
