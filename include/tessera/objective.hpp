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

// Gram targets of the style layers (normalised as G = F F^T / (C N)),
// blended as sum_k w_k G(style_k) with the weights normalised to sum to 1;
// each style image has its own size and runs through a features-only network.
StyleTargets compute_style_targets(Backend& backend, const Architecture& arch, const WeightSet& weights,
                                   Pooling pooling, const std::vector<std::string>& layers,
                                   const std::vector<const Tensor*>& styles, const std::vector<float>& blend_weights);

class Objective {
 public:
  Objective(Backend& backend, const Architecture& arch, const WeightSet& weights, Shape image,
            ObjectiveSettings settings, Communicator& communicator);
  ~Objective();

  // Targets: the content features of `content` (same shape as the image),
  // and style Gram matrices blended as sum_k weight_k G(style_k) (weights are
  // normalised to sum to 1). Style images may have any size.
  // The weights are needed only while planning and setting targets: a
  // caller may free them once both are set.
  void set_content(const Tensor& content);
  void set_styles(const std::vector<const Tensor*>& styles, const std::vector<float>& blend_weights,
                  const WeightSet& weights);
  const StyleTargets& style_targets() const { return targets_; }

  // Loss at `image` and its gradient (overwritten).
  LossTerms evaluate(const Tensor& image, Tensor& gradient);
  // The loss terms and the Gram matrices of the current image only; no
  // gradient (for reports at the initial image, tests).
  LossTerms measure(const Tensor& image);

  Network& network() { return *network_; }
  // After evaluate()/measure(): the current image's Gram matrix of style
  // layer i (planar C x C), and content target i (features layout).
  const Tensor& gram(int style_index) const { return grams_[style_index]; }
  const Tensor& content_target(int content_index) const { return content_targets_[content_index]; }
  const ObjectiveSettings& settings() const { return settings_; }
  // Floating-point work of one evaluation (forward + backward to the input,
  // Gram products): 2 per multiply-add.
  double flops_per_evaluation() const;

 private:
  LossTerms compute(const Tensor& image, Tensor* gradient);

  Backend& backend_;
  const Architecture& arch_;
  ObjectiveSettings settings_;
  Communicator& communicator_;
  std::unique_ptr<Network> network_;
  std::vector<int> content_taps_, style_taps_;
  std::vector<std::unique_ptr<GramOperator>> gram_ops_;
  std::vector<Tensor> content_targets_;
  StyleTargets targets_;
  std::vector<Tensor> grams_, differences_;
  bool have_content_ = false, have_style_ = false;
};

}  // namespace tessera
