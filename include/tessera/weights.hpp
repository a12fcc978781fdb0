// Backbone weights in memory, independent of the file they came from.
#pragma once

#include <array>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace tessera {

// The affine map from an RGB pixel in [0,1] to the backbone's input domain:
//   input[c] = sum_k matrix[c][k] * rgb[k] + bias[c].
// Covers Caffe's convention (BGR order, x255, mean subtracted), torchvision's
// (mean/std per channel) and a leading 1x1 colour convolution folded in (as in
// the normalised VGG-19 encoders). Losses and the optimiser work in the input
// domain; the inverse map brings the result back to RGB.
struct ColorTransform {
  std::array<std::array<float, 3>, 3> matrix{};
  std::array<float, 3> bias{};

  static ColorTransform identity();
  static ColorTransform caffe();        // BGR, x255, minus (103.939, 116.779, 123.68)
  static ColorTransform torchvision();  // (rgb - (0.485, 0.456, 0.406)) / (0.229, 0.224, 0.225)
  ColorTransform inverse() const;       // throws tessera::Error if singular
  std::array<float, 3> apply(std::array<float, 3> rgb) const;
};

// One convolution's parameters, in Caffe/PyTorch order: weight is OIHW.
struct ConvWeights {
  std::string name;  // Caffe layer name: conv1_1, ..., cccp8-1024
  int out_channels = 0;
  int in_channels = 0;
  int kernel_h = 0;
  int kernel_w = 0;
  std::vector<float> weight;  // out * in * kernel_h * kernel_w
  std::vector<float> bias;    // out
};

struct WeightSet {
  std::string architecture;  // "vgg19", "vgg16" or "nin"
  ColorTransform input = ColorTransform::caffe();
  // In network order; may be a prefix of the architecture's convolutions
  // (a file that covers only the first layers).
  std::vector<ConvWeights> convs;
  // Free-form provenance recorded by the importer: source file, sha256, format.
  std::map<std::string, std::string> provenance;

  const ConvWeights* find(std::string_view name) const {
    for (const auto& conv : convs)
      if (conv.name == name) return &conv;
    return nullptr;
  }
};

}  // namespace tessera
