// The Gatys objective with neural-style's conventions (DESIGN.md section 1):
//   content  E_c = w_c * mean((F_c(x) - P)^2)
//   style    E_s = sum_l w_s * mean((G_l(x) - A_l)^2),  G = F F^T / (C N)
//   TV       E_tv = 0.5 * w_tv * sum over the (H-1) x (W-1) grid of squared
//            right and down differences
// all on the image in the backbone's input domain.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tessera/backend.hpp"
#include "tessera/communicator.hpp"
#include "tessera/network.hpp"

namespace tessera {

struct ObjectiveSettings {
  std::vector<std::string> content_layers;
  std::vector<std::string> style_layers;
  float content_weight = 5.0f;
  float style_weight = 100.0f;
  float tv_weight = 1e-3f;
  Pooling pooling = Pooling::max;
  // neural-style's -normalize_gradients: each loss term's gradient with
  // respect to its layer's features is divided by its L1 norm (+ 1e-8)
  // before the weight is applied. The losses are unchanged, so the
  // gradient is then no longer the loss's.
  bool normalize_gradients = false;

  // Content layers, then the style layers not already among them.
  std::vector<std::string> layers() const;
};

// The style blend weights checked (one per style image, none negative, not
// all zero) and normalised to sum to 1.
std::vector<double> normalised_blend_weights(std::size_t style_count, const std::vector<float>& blend_weights);

struct LossTerms {
  double content = 0.0;
  double style = 0.0;
  double tv = 0.0;
  std::vector<double> style_per_layer;
  double total() const { return content + style + tv; }
};

// Gram matrices of the style layers (planar C x C on the backend), blended
// over several style images.
struct StyleTargets {
  std::vector<std::string> layers;
  std::vector<Tensor> grams;
};

}  // namespace tessera
