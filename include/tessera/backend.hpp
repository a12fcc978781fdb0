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

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "tessera/box.hpp"
#include "tessera/model.hpp"
#include "tessera/tensor.hpp"
#include "tessera/weights.hpp"

namespace tessera {

// Windows of a feature map (or image) are boxes in that map's own
// coordinates: the positions whose statistics count. Tiled renders count
// only owned positions.
inline Box whole_map(const Shape& shape) { return {0, 0, shape.width, shape.height}; }

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
// positions in a window, and its adjoint. The public calls check their
// arguments against the planned shape, then hand over to the backend's
// implementation.
class GramOperator {
 public:
  virtual ~GramOperator() = default;
  // gram: planar C x C (Shape{1, C, C}).
  void forward(const Tensor& features, const Box& window, float scale, Tensor& gram);
  // The same, computed so that the result depends only on the window's
  // values and size, never on where it lies in the map or the map's width
  // (the window is first copied to a buffer of its own): the blocks of a
  // tiled render then give the same partial sums in any decomposition.
  void forward_contiguous(const Tensor& features, const Box& window, float scale, Tensor& gram);
  // grad_features[window] += scale * D F[window], for a symmetric D.
  void backward(const Tensor& features, const Box& window, const Tensor& d, float scale, Tensor& grad_features);

 protected:
  // The features' shape and element type this operator is planned for.
  GramOperator(Shape features, DataType type) : shape_(features), type_(type) {}
  const Shape& shape() const { return shape_; }
  DataType type() const { return type_; }

 private:
  void check(const Tensor& features, const Box& window, const Tensor& square) const;
  virtual void do_forward(const Tensor& features, const Box& window, float scale, Tensor& gram) = 0;
  virtual void do_forward_contiguous(const Tensor& features, const Box& window, float scale, Tensor& gram) = 0;
  virtual void do_backward(const Tensor& features, const Box& window, const Tensor& d, float scale,
                           Tensor& grad_features) = 0;

  Shape shape_;
  DataType type_;
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

// Sums in double in a backend's memory (device memory on a GPU): every
// reduction block's Gram partial is added where the features are, and the
// whole buffer (all style layers' Gram sums, the content and TV sums) goes
// to the communicator as one buffer, one all-reduce per evaluation. Only
// the backend that allocated it reads or writes its values.
class DoubleBuffer {
 public:
  DoubleBuffer() = default;
  DoubleBuffer(std::shared_ptr<double> storage, std::size_t size) : storage_(std::move(storage)), size_(size) {}
  std::size_t size() const { return size_; }
  std::size_t bytes() const { return size_ * sizeof(double); }
  // The backend's memory (host memory only where Backend::host_memory()).
  double* data() { return storage_.get(); }
  const double* data() const { return storage_.get(); }

 private:
  std::shared_ptr<double> storage_;
  std::size_t size_ = 0;
};

// Storage of activations: f32 (the reference), or bf16 (half the memory
// and bandwidth; products accumulate in f32, Gram sums and losses stay f32).
enum class Precision { f32, bf16 };
Precision parse_precision(const std::string& text);  // "f32" | "bf16", else tessera::Error
// TESSERA_POISON_BUFFERS set to anything but 0: see Backend::Contents.
bool poison_unset_buffers();
const char* precision_name(Precision precision);

// Every operation's public call is the same for every backend: it checks
// its arguments (sizes, element types, layouts, windows inside their maps)
// once, here, and hands over to the backend's private do_ function, as
// ggml's dispatcher does; a backend never sees a call the interface refuses.
// Allocation bookkeeping (the peak) and the weights' fingerprint are shared
// too.
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
  Tensor allocate(Shape shape, Layout layout, Contents contents);
  Tensor allocate(Shape shape, Layout layout) { return allocate(shape, layout, Contents::zeros); }
  // Host data is always planar C x H x W.
  void upload(std::span<const float> host, Tensor& tensor);
  void download(const Tensor& tensor, std::span<float> host);
  // Whether tensors and double buffers live in this process's memory (the
  // CPU backend), so that a communicator may hand their memory to MPI as
  // it is; else it is a device's, reached through upload and download (or
  // a device-aware communicator such as NCCL's).
  virtual bool host_memory() const = 0;
  // The device memory free now (bytes); 0 where the memory is the host's.
  virtual std::size_t free_device_bytes() const = 0;
  // Peak bytes this backend allocated on its device.
  std::size_t peak_device_bytes() const { return peak_bytes_.load(); }

  // --- layers, planned once per input shape
  std::unique_ptr<ConvolutionLayer> plan_convolution(const LayerSpec& spec, const ConvWeights& weights, Shape input,
                                                     Layout input_layout);
  std::unique_ptr<PoolingLayer> plan_pooling(const LayerSpec& spec, Pooling pooling, Shape input);
  std::unique_ptr<GramOperator> plan_gram(Shape features);
  // Converts between planar and feature layouts (same shape).
  void convert(const Tensor& source, Tensor& destination);

  // --- losses (sums in double; gradients accumulate)
  // sum over the window of (a - b)^2; grad_a[window] += grad_scale * (a - b).
  double squared_distance(const Tensor& a, const Tensor& b, const Box& window, float grad_scale, Tensor* grad_a);
  // sum over the window of |a| (any layout, f32 or bf16): a feature
  // gradient's L1 norm over a tile's owned positions.
  double window_sum_abs(const Tensor& a, const Box& window);
  // Total variation: 0.5 * weight * sum over the (H-1) x (W-1) grid of squared
  // right and down differences; its gradient (from every cell) is added to
  // grad. The value counts only the cells whose top-left pixel lies in
  // `counted` (a tile's owned pixels).
  double total_variation(const Tensor& image, float weight, Tensor& grad, const Box& counted);
  double total_variation(const Tensor& image, float weight, Tensor& grad) {
    return total_variation(image, weight, grad, whole_map(image.shape()));
  }
  // Planar images: copies source[window] into destination with its top-left
  // corner at (x, y). Same channel count.
  void copy_window(const Tensor& source, const Box& window, Tensor& destination, int x, int y);

  // --- vectors (any layout; element-wise over all elements)
  double dot(const Tensor& a, const Tensor& b);
  double sum_abs(const Tensor& a);
  void fill(Tensor& a, float value);
  void copy(const Tensor& source, Tensor& destination);
  void scale(Tensor& a, float factor);
  void axpy(float alpha, const Tensor& x, Tensor& y);  // y += alpha x
  // d = a - b
  void subtract(const Tensor& a, const Tensor& b, Tensor& d);
  // Every row's dot product with every column, reading each column once:
  // products[r * columns.size() + c] = rows[r] . columns[c], summed in double
  // in an order fixed by the element and thread counts (the same vectors give
  // the same products, bit for bit). L-BFGS's few new vectors against its
  // whole history, for one reduction across ranks.
  void dot_products(std::span<const Tensor* const> rows, std::span<const Tensor* const> columns,
                    std::span<double> products);
  // out = sum over i of coefficients[i] * terms[i], each element summed in
  // double and rounded once; `out` may be one of the terms.
  void combine(std::span<const Tensor* const> terms, std::span<const double> coefficients, Tensor& out);
  // --- double buffers (DoubleBuffer): zeros when allocated
  DoubleBuffer allocate_doubles(std::size_t count);
  void clear(DoubleBuffer& sums);
  // sums[offset + i] += values[i] in double: each element's additions in the
  // order of the calls, so that any set of blocks summed in a fixed order
  // gives the same sums on every backend.
  void accumulate_double(const Tensor& values, DoubleBuffer& sums, std::size_t offset);
  // values[i] = float(sums[offset + i]).
  void assign_from_double(const DoubleBuffer& sums, std::size_t offset, Tensor& values);
  // Host values into, and out of, sums[offset ...].
  void write_doubles(std::span<const double> values, DoubleBuffer& sums, std::size_t offset);
  void read_doubles(const DoubleBuffer& sums, std::size_t offset, std::span<double> values);
  // One Adam step on x with gradient g and moments m, v (all planar, same size).
  void adam_update(Tensor& x, const Tensor& g, Tensor& m, Tensor& v, const AdamState& state);

 protected:
  // The backends' device allocations: each counts its bytes in when made and
  // out when freed, and the peak follows.
  void count_allocated(std::size_t bytes);
  void count_freed(std::size_t bytes) { current_bytes_.fetch_sub(bytes); }
  std::size_t allocated_bytes() const { return current_bytes_.load(); }
  // FNV-1a over a convolution's weight values: the backends' caches of
  // reordered or uploaded weights are keyed by it, so that two networks
  // planned from the same values share one copy and reused host memory is
  // never mistaken for the weights it once held.
  static std::uint64_t fingerprint(std::span<const float> values);

 private:
  virtual Tensor do_allocate(Shape shape, Layout layout, Contents contents) = 0;
  virtual void do_upload(std::span<const float> host, Tensor& tensor) = 0;
  virtual void do_download(const Tensor& tensor, std::span<float> host) = 0;
  virtual std::unique_ptr<ConvolutionLayer> do_plan_convolution(const LayerSpec& spec, const ConvWeights& weights,
                                                                Shape input, Layout input_layout) = 0;
  virtual std::unique_ptr<PoolingLayer> do_plan_pooling(const LayerSpec& spec, Pooling pooling, Shape input) = 0;
  virtual std::unique_ptr<GramOperator> do_plan_gram(Shape features) = 0;
  virtual void do_convert(const Tensor& source, Tensor& destination) = 0;
  virtual double do_squared_distance(const Tensor& a, const Tensor& b, const Box& window, float grad_scale,
                                     Tensor* grad_a) = 0;
  virtual double do_window_sum_abs(const Tensor& a, const Box& window) = 0;
  virtual double do_total_variation(const Tensor& image, float weight, Tensor& grad, const Box& counted) = 0;
  virtual void do_copy_window(const Tensor& source, const Box& window, Tensor& destination, int x, int y) = 0;
  virtual double do_dot(const Tensor& a, const Tensor& b) = 0;
  virtual double do_sum_abs(const Tensor& a) = 0;
  virtual void do_fill(Tensor& a, float value) = 0;
  virtual void do_copy(const Tensor& source, Tensor& destination) = 0;
  virtual void do_scale(Tensor& a, float factor) = 0;
  virtual void do_axpy(float alpha, const Tensor& x, Tensor& y) = 0;
  virtual void do_subtract(const Tensor& a, const Tensor& b, Tensor& d) = 0;
  virtual void do_dot_products(std::span<const Tensor* const> rows, std::span<const Tensor* const> columns,
                               std::span<double> products) = 0;
  virtual void do_combine(std::span<const Tensor* const> terms, std::span<const double> coefficients,
                          Tensor& out) = 0;
  virtual DoubleBuffer do_allocate_doubles(std::size_t count) = 0;
  virtual void do_clear(DoubleBuffer& sums) = 0;
  virtual void do_accumulate_double(const Tensor& values, DoubleBuffer& sums, std::size_t offset) = 0;
  virtual void do_assign_from_double(const DoubleBuffer& sums, std::size_t offset, Tensor& values) = 0;
  virtual void do_write_doubles(std::span<const double> values, DoubleBuffer& sums, std::size_t offset) = 0;
  virtual void do_read_doubles(const DoubleBuffer& sums, std::size_t offset, std::span<double> values) = 0;
  virtual void do_adam_update(Tensor& x, const Tensor& g, Tensor& m, Tensor& v, const AdamState& state) = 0;

  std::atomic<std::size_t> current_bytes_{0};
  std::atomic<std::size_t> peak_bytes_{0};
};

// The backends compiled into this build ("cpu", and "cuda" when built with it).
std::vector<std::string> available_backends();
// "auto" picks the best available device.
std::unique_ptr<Backend> make_backend(const std::string& name);
// The backend make_backend(name) makes here ("cpu" or "cuda"), without
// making it; other names are returned as they are.
std::string resolve_backend(const std::string& name);

// --precision: "f32", "bf16", or "auto": f32 on the CPU (the reference),
// and on a GPU bf16 from 4K (3840 x 2160 pixels) up, where half the
// activations' memory and bandwidth matter most.
Precision choose_precision(const std::string& requested, const std::string& backend, int width, int height);

}  // namespace tessera
