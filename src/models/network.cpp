#include "tessera/network.hpp"

#include <algorithm>

#include "tessera/error.hpp"

namespace tessera {

// One planned step: a convolution with its ReLU, or a pooling layer. Its
// output is kept for the backward pass (the ReLU mask and the pooling
// workspace need it).
struct Network::Stage {
  std::string name;  // the ReLU's name for a convolution, the pool's otherwise
  std::unique_ptr<ConvolutionLayer> convolution;
  std::unique_ptr<PoolingLayer> pooling;
  Shape output_shape;
  Tensor output;
};

int check_loss_layers(const Architecture& arch, const WeightSet& weights, const std::vector<std::string>& layers) {
  int deepest = -1;
  for (const auto& layer : layers) {
    int index = arch.index_of(layer);
    if (index < 0 || arch.layers[index].kind != LayerKind::relu) {
      std::string relus;
      for (const auto& candidate : arch.layers)
        if (candidate.kind == LayerKind::relu) relus += (relus.empty() ? "" : ", ") + candidate.name;
      fail("model ", arch.name, " has no layer '", layer, "' to use for a loss (layers: ", relus, ")");
    }
    deepest = std::max(deepest, index);
  }
  auto available = deepest_available_layer(arch, weights);
  if (deepest > arch.index_of(available))
    fail("layer ", arch.layers[deepest].name, " is beyond the weights, which end at ", available,
         " (the deepest layer available)");
  return deepest;
}

Network::Network(Backend& backend, const Architecture& arch, const WeightSet& weights, Pooling pooling,
                 Shape input, const std::vector<std::string>& taps, NetworkUse use)
    : backend_(backend), input_(input), use_(use) {
  if (taps.empty()) fail("internal: a network needs at least one tapped layer");
  if (input.channels != 3) fail("internal: the network input must have 3 channels");
  validate_weights(arch, weights);

  // The deepest tap decides how far to plan.
  const int deepest = check_loss_layers(arch, weights, taps);

  Shape shape = input;
  Layout layout = Layout::planar;
  std::size_t largest = input.elements();
  std::size_t conv_index = 0;
  for (int i = 0; i <= deepest; ++i) {
    const LayerSpec& spec = arch.layers[i];
    auto stage = std::make_unique<Stage>();
    if (spec.kind == LayerKind::conv) {
      // Every convolution in these backbones is followed by its ReLU: fuse them.
      if (i + 1 >= int(arch.layers.size()) || arch.layers[i + 1].kind != LayerKind::relu)
        fail("internal: ", spec.name, " is not followed by a ReLU");
      const ConvWeights& conv_weights = weights.convs.at(conv_index++);
      stage->convolution = backend_.plan_convolution(spec, conv_weights, shape, layout);
      stage->output_shape = stage->convolution->output_shape();
      stage->name = arch.layers[i + 1].name;
      ++i;
    } else if (spec.kind == LayerKind::max_pool || spec.kind == LayerKind::avg_pool) {
      stage->pooling = backend_.plan_pooling(spec, pooling, shape);
      stage->output_shape = stage->pooling->output_shape();
      stage->name = spec.name;
    } else {
      fail("internal: unexpected layer ", spec.name);
    }
    shape = stage->output_shape;
    layout = Layout::features;
    largest = std::max(largest, shape.elements());
    stages_.push_back(std::move(stage));
  }

  for (const auto& name : taps) {
    Tap tap;
    tap.name = name;
    for (std::size_t s = 0; s < stages_.size(); ++s)
      if (stages_[s]->name == name) tap.stage = int(s);
    taps_.push_back(std::move(tap));
  }

  largest_ = largest;
  if (use_ == NetworkUse::features_only) allocate_buffers();
}

void Network::allocate_buffers() {
  // Outputs: training keeps every stage's output for the backward pass (the
  // ReLU masks and the pooling workspaces need them); features-only keeps the
  // taps and alternates the rest between two buffers. Shared buffers are
  // sized for the largest layer and viewed at each stage's shape.
  Tensor pass_through[2];
  if (use_ == NetworkUse::features_only) {
    pass_through[0] = backend_.allocate({int(largest_), 1, 1}, Layout::features, Backend::Contents::unset);
    pass_through[1] = backend_.allocate({int(largest_), 1, 1}, Layout::features, Backend::Contents::unset);
  }
  for (std::size_t s = 0; s < stages_.size(); ++s) {
    bool tapped = std::any_of(taps_.begin(), taps_.end(), [&](const Tap& t) { return t.stage == int(s); });
    Stage& stage = *stages_[s];
    if (use_ == NetworkUse::training || tapped)
      stage.output = backend_.allocate(stage.output_shape, Layout::features, Backend::Contents::unset);
    else
      stage.output = pass_through[s % 2].view(stage.output_shape, Layout::features);
  }
  if (use_ == NetworkUse::training) {
    for (auto& tap : taps_)
      tap.gradient = backend_.allocate(stages_[tap.stage]->output_shape, Layout::features, Backend::Contents::unset);
    // Two buffers large enough for any layer carry the gradient down.
    gradient_a_ = backend_.allocate({int(largest_), 1, 1}, Layout::features, Backend::Contents::unset);
    gradient_b_ = backend_.allocate({int(largest_), 1, 1}, Layout::features, Backend::Contents::unset);
  }
  buffers_allocated_ = true;
}

void Network::release_buffers() {
  if (use_ != NetworkUse::training) return;
  for (auto& stage : stages_) stage->output = Tensor();
  for (auto& tap : taps_) tap.gradient = Tensor();
  gradient_a_ = gradient_b_ = Tensor();
  buffers_allocated_ = false;
}

Network::~Network() = default;

int Network::tap_index(const std::string& layer_name) const {
  for (std::size_t t = 0; t < taps_.size(); ++t)
    if (taps_[t].name == layer_name) return int(t);
  fail("internal: layer ", layer_name, " is not tapped");
}

Shape Network::tap_shape(int tap) const { return stages_[taps_[tap].stage]->output_shape; }

void Network::forward(const Tensor& image) {
  if (!(image.shape() == input_) || image.layout() != Layout::planar)
    fail("internal: network planned for ", input_.describe(), " got ", image.shape().describe());
  if (!buffers_allocated_) allocate_buffers();
  const Tensor* input = &image;
  for (auto& stage : stages_) {
    if (stage->convolution)
      stage->convolution->forward(*input, stage->output);
    else
      stage->pooling->forward(*input, stage->output);
    input = &stage->output;
  }
}

const Tensor& Network::features(int tap) const { return stages_[taps_[tap].stage]->output; }

Tensor& Network::feature_gradient(int tap) { return taps_[tap].gradient; }

void Network::clear_feature_gradients() {
  if (use_ != NetworkUse::training || !buffers_allocated_) return;
  for (auto& tap : taps_) backend_.fill(tap.gradient, 0.0f);
}

void Network::backward(Tensor& image_gradient) {
  if (use_ != NetworkUse::training) fail("internal: backward through a features-only network");
  if (!buffers_allocated_) fail("internal: backward before forward");
  if (!(image_gradient.shape() == input_) || image_gradient.layout() != Layout::planar)
    fail("internal: image gradient has the wrong shape");
  int deepest_stage = 0;
  for (const auto& tap : taps_) deepest_stage = std::max(deepest_stage, tap.stage);

  Tensor* carry = &gradient_a_;
  Tensor* spare = &gradient_b_;
  *carry = carry->view(stages_[deepest_stage]->output_shape, Layout::features);
  backend_.fill(*carry, 0.0f);
  for (int s = deepest_stage; s >= 0; --s) {
    Stage& stage = *stages_[s];
    for (auto& tap : taps_)
      if (tap.stage == s) backend_.axpy(1.0f, tap.gradient, *carry);
    Shape below = s > 0 ? stages_[s - 1]->output_shape : input_;
    Tensor destination = s > 0 ? spare->view(below, Layout::features) : image_gradient;
    if (stage.convolution)
      stage.convolution->backward(stage.output, *carry, destination);
    else
      stage.pooling->backward(*carry, destination);
    if (s > 0) {
      *spare = destination;
      std::swap(carry, spare);
    }
  }
}

double Network::forward_macs() const {
  double total = 0.0;
  for (const auto& stage : stages_)
    if (stage->convolution) total += stage->convolution->forward_macs();
  return total;
}

}  // namespace tessera
