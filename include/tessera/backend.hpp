// The backend interface: the coarse operations the algorithm needs, with one
// implementation per device (CPU on oneDNN, CUDA on cuDNN/cuBLAS). Models,
// losses and optimisers talk only to this interface and never include a
// vendor header.
//
// Conventions:
//  * Layers are planned once for a shape (primitives, workspaces, layouts)
//    and then run many times; nothing is allocated while running them.
//  * Activations use Layout::features, chosen by the backend and kept between
//    layers (no reorder per op). Images, gradients, optimiser vectors and
//    Gram matrices use Layout::planar.
//  * "accumulate" arguments add into the output instead of overwriting it.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "tessera/model.hpp"
#include "tessera/tensor.hpp"
#include "tessera/weights.hpp"

namespace tessera {

// A window of a feature map (or image) in that map's own coordinates: the
// positions whose statistics count. Tiled renders count only owned positions.
struct Window {
  int y = 0;
  int x = 0;
  int height = 0;
  int width = 0;
  static Window whole(const Shape& shape) { return {0, 0, shape.height, shape.width}; }
  std::size_t area() const { return std::size_t(height) * width; }
};

// A convolution with its ReLU fused: out = relu(conv(in) + bias).
class ConvolutionLayer {
 public:
  virtual ~ConvolutionLayer() = default;
  virtual Shape output_shape() const = 0;
  virtual void forward(const Tensor& input, Tensor& output) = 0;
  // grad_output is the gradient with respect to the ReLU's output and is
  // overwritten (masked in place); grad_input receives the gradient with
  // respect to the convolution's input. `output` is the forward result.
  virtual void backward(const Tensor& output, Tensor& grad_output, Tensor& grad_input) = 0;
  // Multiply-adds of one forward pass (for achieved-throughput figures).
  virtual double forward_macs() const = 0;
};

class PoolingLayer {
 public:
  virtual ~PoolingLayer() = default;
  virtual Shape output_shape() const = 0;
  virtual void forward(const Tensor& input, Tensor& output) = 0;
  virtual void backward(const Tensor& grad_output, Tensor& grad_input) = 0;
};

// Gram statistics of one feature map shape: G = scale * F_w F_w^T over the
// positions in a window, and its adjoint.
class GramOperator {
 public:
  virtual ~GramOperator() = default;
  // gram: planar C x C (Shape{1, C, C}).
  virtual void forward(const Tensor& features, const Window& window, float scale, Tensor& gram) = 0;
  // The same, computed so that the result depends only on the window's
  // values and size, never on where it lies in the map or the map's width
  // (the window is first copied to a buffer of its own): the blocks of a
  // tiled render then give the same partial sums in any decomposition.
  virtual void forward_contiguous(const Tensor& features, const Window& window, float scale, Tensor& gram) = 0;
  // grad_features[window] += scale * D F[window], for a symmetric D.
  virtual void backward(const Tensor& features, const Window& window, const Tensor& d, float scale,
                        Tensor& grad_features) = 0;
};

struct AdamState {
  float learning_rate = 10.0f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float epsilon = 1e-8f;
  std::int64_t step = 0;  // completed steps

  // torch/optim's adam.lua, which neural-style uses: the bias corrections of
  // the next step folded into its size (in double); every backend's update
  // is then x -= step_size() * m / (sqrt(v) + epsilon).
  float step_size() const;
};

// Storage of activations: f32 (the reference), or bf16 (half the memory
// and bandwidth; products accumulate in f32, Gram sums and losses stay f32).
enum class Precision { f32, bf16 };
Precision parse_precision(const std::string& text);  // "f32" | "bf16", else tessera::Error
// TESSERA_POISON_BUFFERS set to anything but 0: see Backend::Contents.
bool poison_unset_buffers();
const char* precision_name(Precision precision);

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  // Applies to layers planned and features allocated afterwards.
  virtual void set_precision(Precision precision) = 0;
  virtual Precision precision() const = 0;
  // One line per device: model, memory, library versions.
  virtual std::vector<std::string> describe() const = 0;
  virtual void set_threads(int threads) = 0;

  // --- memory
  // What a fresh buffer holds: `zeros` for one read before it is wholly
  // written (accumulators, Adam's moments), `unset` for one every use writes
  // first (activations, halo-filled tiles, optimiser directions). At poster
  // sizes those are gigabytes, and zeroing them was half of a scale's set-up.
  // With TESSERA_POISON_BUFFERS=1 (the tests set it) unset buffers are filled
  // with NaN, so that a read before a write shows in a result.
  enum class Contents { zeros, unset };
  virtual Tensor allocate(Shape shape, Layout layout, Contents contents) = 0;
  Tensor allocate(Shape shape, Layout layout) { return allocate(shape, layout, Contents::zeros); }
  // Host data is always planar C x H x W.
  virtual void upload(std::span<const float> host, Tensor& tensor) = 0;
  virtual void download(const Tensor& tensor, std::span<float> host) = 0;
  // Peak bytes this backend allocated on its device.
  virtual std::size_t peak_device_bytes() const = 0;

  // --- layers, planned once per input shape
  virtual std::unique_ptr<ConvolutionLayer> plan_convolution(const LayerSpec& spec,
                                                             const ConvWeights& weights,
                                                             Shape input, Layout input_layout) = 0;
  virtual std::unique_ptr<PoolingLayer> plan_pooling(const LayerSpec& spec, Pooling pooling,
                                                     Shape input) = 0;
  virtual std::unique_ptr<GramOperator> plan_gram(Shape features) = 0;
  // Converts between planar and feature layouts (same shape).
  virtual void convert(const Tensor& source, Tensor& destination) = 0;

  // --- losses (sums in double; gradients accumulate)
  // sum over the window of (a - b)^2; grad_a[window] += grad_scale * (a - b).
  virtual double squared_distance(const Tensor& a, const Tensor& b, const Window& window,
                                  float grad_scale, Tensor* grad_a) = 0;
  // sum over the window of |a| (any layout, f32 or bf16): a feature
  // gradient's L1 norm over a tile's owned positions.
  virtual double window_sum_abs(const Tensor& a, const Window& window) = 0;
  // Total variation: 0.5 * weight * sum over the (H-1) x (W-1) grid of squared
  // right and down differences; its gradient (from every cell) is added to
  // grad. The value counts only the cells whose top-left pixel lies in
  // `counted` (a tile's owned pixels).
  virtual double total_variation(const Tensor& image, float weight, Tensor& grad, const Window& counted) = 0;
  double total_variation(const Tensor& image, float weight, Tensor& grad) {
    return total_variation(image, weight, grad, Window::whole(image.shape()));
  }
  // Planar images: copies source[window] into destination with its top-left
  // corner at (x, y). Same channel count.
  virtual void copy_window(const Tensor& source, const Window& window, Tensor& destination, int x, int y) = 0;

  // --- vectors (any layout; element-wise over all elements)
  virtual double dot(const Tensor& a, const Tensor& b) = 0;
  virtual double sum_abs(const Tensor& a) = 0;
  virtual double max_abs(const Tensor& a) = 0;
  virtual void fill(Tensor& a, float value) = 0;
  virtual void copy(const Tensor& source, Tensor& destination) = 0;
  virtual void scale(Tensor& a, float factor) = 0;
  virtual void axpy(float alpha, const Tensor& x, Tensor& y) = 0;  // y += alpha x
  // d = a - b
  virtual void subtract(const Tensor& a, const Tensor& b, Tensor& d) = 0;
  // sum[i] += values[i] in double, in element order (host memory for sum).
  virtual void accumulate_double(const Tensor& values, std::span<double> sum) = 0;
  // values[i] = float(sum[i]).
  virtual void assign_from_double(std::span<const double> sum, Tensor& values) = 0;
  // One Adam step on x with gradient g and moments m, v (all planar, same size).
  virtual void adam_update(Tensor& x, const Tensor& g, Tensor& m, Tensor& v,
                           const AdamState& state) = 0;
};

// The backends compiled into this build ("cpu", and "cuda" when built with it).
std::vector<std::string> available_backends();
// "auto" picks the best available device.
std::unique_ptr<Backend> make_backend(const std::string& name);

}  // namespace tessera
