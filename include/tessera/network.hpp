// A backbone planned on a backend for one input shape: forward to the tapped
// layers, then backward from gradients deposited at those taps to the input.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tessera/backend.hpp"
#include "tessera/model.hpp"
#include "tessera/weights.hpp"

namespace tessera {

// Throws tessera::Error unless every layer is a ReLU of `arch` that the
// weights reach; returns the index of the deepest one.
int check_loss_layers(const Architecture& arch, const WeightSet& weights, const std::vector<std::string>& layers);

// What a network is planned for. A features-only network (the style
// targets) keeps just its tapped layers' outputs and passes the others
// through two shared buffers; it cannot run backward.
enum class NetworkUse { training, features_only };

class Network {
 public:
  // Plans every layer up to the deepest tap. Throws a tessera::Error naming
  // the deepest layer available when a tap lies beyond the weights, or when
  // a tap is not a ReLU output of the architecture.
  Network(Backend& backend, const Architecture& arch, const WeightSet& weights, Pooling pooling, Shape input,
          const std::vector<std::string>& taps, NetworkUse use = NetworkUse::training);
  ~Network();
  Network(const Network&) = delete;
  Network& operator=(const Network&) = delete;

  Shape input_shape() const { return input_; }
  int tap_count() const { return int(taps_.size()); }
  int tap_index(const std::string& layer_name) const;  // throws if not tapped
  const std::string& tap_name(int tap) const { return taps_[tap].name; }
  Shape tap_shape(int tap) const;

  // image: planar 3 x H x W in the backbone's input domain.
  void forward(const Tensor& image);
  const Tensor& features(int tap) const;

  // Gradients with respect to each tap's features (Layout::features); the
  // caller writes or accumulates into them after forward(), then calls
  // backward(), which leaves d loss / d image in image_gradient (overwritten).
  Tensor& feature_gradient(int tap);
  void clear_feature_gradients();
  void backward(Tensor& image_gradient);

  // Multiply-adds of one forward pass through the planned layers.
  double forward_macs() const;

  // A training network's activations and gradient buffers are allocated at
  // the first forward pass and may be released between uses, so that a rank
  // with many tiles holds one tile's activations at a time. Releasing drops
  // the features of the last forward pass.
  void release_buffers();
  bool holds_buffers() const { return buffers_allocated_; }

 private:
  struct Stage;
  struct Tap {
    std::string name;
    int stage = 0;
    Tensor gradient;
  };
  Backend& backend_;
  Shape input_;
  NetworkUse use_;
  std::vector<std::unique_ptr<Stage>> stages_;
  std::vector<Tap> taps_;
  Tensor gradient_a_, gradient_b_;  // ping-pong buffers for the backward pass
  std::size_t largest_ = 0;
  bool buffers_allocated_ = false;
  void allocate_buffers();
};

}  // namespace tessera
