// The whole-image objective: the Gatys loss on one image in one piece, on one
// backend, written apart from the tiled objective that renders use so that
// the tests have an independent reference to hold it against (tiled equals
// whole) and to hold against PyTorch.
#include "support/whole_objective.hpp"

#include "tessera/error.hpp"

namespace tessera::testing {

WholeObjective::WholeObjective(Backend& backend, const Architecture& arch, const WeightSet& weights, Shape image,
                               ObjectiveSettings settings, Communicator& communicator)
    : backend_(backend), arch_(arch), settings_(std::move(settings)),
      communicator_(communicator) {
  if (settings_.content_layers.empty() && settings_.style_layers.empty())
    fail("no content or style layer given");
  if (settings_.normalize_gradients) fail("internal: normalised gradients are the tiled objective's only");
  network_ = std::make_unique<Network>(backend_, arch_, weights, settings_.pooling, image,
                                       settings_.layers());
  for (const auto& name : settings_.content_layers) content_taps_.push_back(network_->tap_index(name));
  for (const auto& name : settings_.style_layers) {
    int tap = network_->tap_index(name);
    style_taps_.push_back(tap);
    Shape features = network_->tap_shape(tap);
    Shape gram{1, features.channels, features.channels};
    gram_ops_.push_back(backend_.plan_gram(features));
    grams_.push_back(backend_.allocate(gram, Layout::planar));
    differences_.push_back(backend_.allocate(gram, Layout::planar));
  }
  targets_.layers = settings_.style_layers;
}

WholeObjective::~WholeObjective() = default;

void WholeObjective::set_content(const Tensor& content) {
  network_->forward(content);
  content_targets_.clear();
  for (int tap : content_taps_) {
    Tensor target = backend_.allocate(network_->tap_shape(tap), Layout::features);
    backend_.copy(network_->features(tap), target);
    content_targets_.push_back(std::move(target));
  }
  have_content_ = true;
}

StyleTargets whole_image_style_targets(Backend& backend, const Architecture& arch, const WeightSet& weights,
                                       Pooling pooling, const std::vector<std::string>& layers,
                                       const std::vector<const Tensor*>& styles,
                                       const std::vector<float>& blend_weights) {
  const auto blend = normalised_blend_weights(styles.size(), blend_weights);
  StyleTargets targets;
  targets.layers = layers;
  if (layers.empty()) return targets;
  std::vector<Tensor> scratch;
  for (std::size_t k = 0; k < styles.size(); ++k) {
    Network network(backend, arch, weights, pooling, styles[k]->shape(), layers, NetworkUse::features_only);
    network.forward(*styles[k]);
    for (std::size_t l = 0; l < layers.size(); ++l) {
      int tap = network.tap_index(layers[l]);
      Shape features = network.tap_shape(tap);
      Shape gram{1, features.channels, features.channels};
      if (k == 0) {
        targets.grams.push_back(backend.allocate(gram, Layout::planar));
        scratch.push_back(backend.allocate(gram, Layout::planar));
      }
      auto gram_op = backend.plan_gram(features);
      float normaliser = 1.0f / float(double(features.channels) * features.plane());
      gram_op->forward(network.features(tap), whole_map(features), normaliser, scratch[l]);
      backend.axpy(float(blend[k]), scratch[l], targets.grams[l]);
    }
  }
  return targets;
}

void WholeObjective::set_styles(const std::vector<const Tensor*>& styles, const std::vector<float>& blend_weights,
                                const WeightSet& weights) {
  targets_ = whole_image_style_targets(backend_, arch_, weights, settings_.pooling, settings_.style_layers, styles,
                                       blend_weights);
  have_style_ = true;
}

LossTerms WholeObjective::evaluate(const Tensor& image, Tensor& gradient) {
  if (!(gradient.shape() == image.shape()) || gradient.layout() != Layout::planar)
    fail("internal: gradient shape differs from the image's");
  return compute(image, &gradient);
}

LossTerms WholeObjective::measure(const Tensor& image) { return compute(image, nullptr); }

LossTerms WholeObjective::compute(const Tensor& image, Tensor* gradient) {
  if (!settings_.content_layers.empty() && !have_content_) fail("internal: content target not set");
  if (!settings_.style_layers.empty() && !have_style_) fail("internal: style targets not set");
  network_->forward(image);
  if (gradient) network_->clear_feature_gradients();

  LossTerms losses;
  // Content: w * mean squared error; d/dF = 2 w (F - P) / n.
  for (std::size_t i = 0; i < content_taps_.size(); ++i) {
    int tap = content_taps_[i];
    Shape shape = network_->tap_shape(tap);
    double n = double(shape.elements());
    float grad_scale = float(2.0 * settings_.content_weight / n);
    double sum = backend_.squared_distance(network_->features(tap), content_targets_[i], whole_map(shape),
                                           grad_scale, gradient ? &network_->feature_gradient(tap) : nullptr);
    losses.content += settings_.content_weight * sum / n;
  }

  // Style: G = F F^T / (C N); E = w mean((G - A)^2) over C^2 entries.
  // Every rank's Gram sums are added before the loss (one call for all layers).
  for (std::size_t l = 0; l < style_taps_.size(); ++l) {
    Shape shape = network_->tap_shape(style_taps_[l]);
    float normaliser = float(1.0 / (double(shape.channels) * shape.plane()));
    gram_ops_[l]->forward(network_->features(style_taps_[l]), whole_map(shape), normaliser, grams_[l]);
  }
  // Through host memory, which any backend's Gram matrices can reach.
  if (communicator_.size() > 1)
    for (auto& gram : grams_) {
      std::vector<float> host(gram.elements());
      backend_.download(gram, host);
      communicator_.sum(std::span<float>(host));
      backend_.upload(host, gram);
    }
  for (std::size_t l = 0; l < style_taps_.size(); ++l) {
    int tap = style_taps_[l];
    Shape shape = network_->tap_shape(tap);
    double c = shape.channels;
    backend_.subtract(grams_[l], targets_.grams[l], differences_[l]);
    double layer_loss = settings_.style_weight * backend_.dot(differences_[l], differences_[l]) / (c * c);
    losses.style_per_layer.push_back(layer_loss);
    losses.style += layer_loss;
    if (gradient) {
      // dE/dG = 2 w D / C^2, and through the (symmetric) Gram:
      // dE/dF = 2 dE/dG F / (C N) = 4 w D F / (C^3 N).
      float scale = float(4.0 * settings_.style_weight / (c * c * c * double(shape.plane())));
      gram_ops_[l]->backward(network_->features(tap), whole_map(shape), differences_[l], scale,
                             network_->feature_gradient(tap));
    }
  }

  if (gradient) {
    network_->backward(*gradient);
    losses.tv = backend_.total_variation(image, settings_.tv_weight, *gradient);
  } else if (settings_.tv_weight != 0.0f) {
    // The value alone: run the same kernel into a scratch gradient.
    Tensor scratch = backend_.allocate(image.shape(), Layout::planar);
    losses.tv = backend_.total_variation(image, settings_.tv_weight, scratch);
  }
  return losses;
}

double WholeObjective::flops_per_evaluation() const {
  // Forward convolutions, backward-to-input convolutions (the same count of
  // multiply-adds), and per style layer two products of C x C x N.
  double macs = 2.0 * network_->forward_macs();
  for (int tap : style_taps_) {
    Shape shape = network_->tap_shape(tap);
    macs += 2.0 * double(shape.channels) * shape.channels * shape.plane();
  }
  return 2.0 * macs;
}

}  // namespace tessera::testing
