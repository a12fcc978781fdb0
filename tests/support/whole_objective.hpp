// The whole-image objective, the tests' independent reference for the tiled
// objective that renders use (see whole_objective.cpp).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tessera/backend.hpp"
#include "tessera/communicator.hpp"
#include "tessera/network.hpp"
#include "tessera/objective.hpp"

namespace tessera::testing {

// Gram targets of the style layers (normalised as G = F F^T / (C N)),
// blended as sum_k w_k G(style_k) with the weights normalised to sum to 1;
// each style image has its own size and runs through a features-only network.
StyleTargets whole_image_style_targets(Backend& backend, const Architecture& arch, const WeightSet& weights,
                                       Pooling pooling, const std::vector<std::string>& layers,
                                       const std::vector<const Tensor*>& styles,
                                       const std::vector<float>& blend_weights);

class WholeObjective {
 public:
  WholeObjective(Backend& backend, const Architecture& arch, const WeightSet& weights, Shape image,
                 ObjectiveSettings settings, Communicator& communicator);
  ~WholeObjective();

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

}  // namespace tessera::testing
