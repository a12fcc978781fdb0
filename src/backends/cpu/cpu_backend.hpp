// The CPU backend: oneDNN for convolution, pooling and the Gram matrix
// products; OpenMP loops for the element-wise work.
#pragma once

#include <oneapi/dnnl/dnnl.hpp>

#include <atomic>
#include <cstdint>
#include <string>

#include "tessera/backend.hpp"
#include "tessera/checked_call.hpp"
#include "tessera/error.hpp"

namespace tessera::cpu {

// oneDNN reports failures by throwing dnnl::error.
struct Dnnl {
  static constexpr const char* name = "oneDNN";
  using exception = dnnl::error;
  static std::string describe(const dnnl::error& e) {
    return std::string(e.what()) + " (status " + std::to_string(int(e.status)) + ")";
  }
};

class CpuBackend final : public Backend {
 public:
  CpuBackend();

  std::string name() const override { return "cpu"; }
  void set_precision(Precision precision) override;
  Precision precision() const override { return precision_; }
  std::vector<std::string> describe() const override;
  void set_threads(int threads) override;

  using Backend::allocate;
  Tensor allocate(Shape shape, Layout layout, Contents contents) override;
  void upload(std::span<const float> host, Tensor& tensor) override;
  void download(const Tensor& tensor, std::span<float> host) override;
  std::size_t peak_device_bytes() const override { return peak_bytes_.load(); }

  std::unique_ptr<ConvolutionLayer> plan_convolution(const LayerSpec& spec, const ConvWeights& weights,
                                                     Shape input, Layout input_layout) override;
  std::unique_ptr<PoolingLayer> plan_pooling(const LayerSpec& spec, Pooling pooling, Shape input) override;
  std::unique_ptr<GramOperator> plan_gram(Shape features) override;
  void convert(const Tensor& source, Tensor& destination) override;

  double squared_distance(const Tensor& a, const Tensor& b, const Window& window, float grad_scale,
                          Tensor* grad_a) override;
  double total_variation(const Tensor& image, float weight, Tensor& grad, const Window& counted) override;
  using Backend::total_variation;
  void copy_window(const Tensor& source, const Window& window, Tensor& destination, int x, int y) override;

  double dot(const Tensor& a, const Tensor& b) override;
  double window_sum_abs(const Tensor& a, const Window& window) override;
  double sum_abs(const Tensor& a) override;
  double max_abs(const Tensor& a) override;
  void fill(Tensor& a, float value) override;
  void copy(const Tensor& source, Tensor& destination) override;
  void scale(Tensor& a, float factor) override;
  void axpy(float alpha, const Tensor& x, Tensor& y) override;
  void subtract(const Tensor& a, const Tensor& b, Tensor& d) override;
  void accumulate_double(const Tensor& values, std::span<double> sum) override;
  void assign_from_double(std::span<const double> sum, Tensor& values) override;
  void adam_update(Tensor& x, const Tensor& g, Tensor& m, Tensor& v, const AdamState& state) override;

  // For the layer implementations.
  const dnnl::engine& engine() const { return engine_; }
  dnnl::stream& stream() { return stream_; }
  static dnnl::memory::desc describe_memory(const Shape& shape, Layout layout, DataType type = DataType::f32);
  // The element type this backend gives activations now.
  DataType feature_type() const { return precision_ == Precision::bf16 ? DataType::bf16 : DataType::f32; }
  static dnnl::memory::data_type dnnl_type(DataType type);
  dnnl::memory wrap(const Tensor& tensor) const;
  // Memory for a layer's own use (reordered weights, workspaces); counted in
  // the peak like every other allocation and freed with the layer.
  struct OwnedMemory {
    std::shared_ptr<float> storage;
    dnnl::memory memory;
  };
  OwnedMemory allocate_memory(const dnnl::memory::desc& desc);
  // A convolution's weights reordered into `desc`, shared by every layer
  // planned from the same values in the same layout (the style targets'
  // network and the render's), so each backbone is held once per layout.
  std::shared_ptr<const OwnedMemory> reordered_weights(const ConvWeights& weights, const dnnl::memory::desc& desc);
  // `from` reordered into `desc`, shared the same way (the backward layout
  // made from the forward copy, once for all networks).
  std::shared_ptr<const OwnedMemory> derived_weights(const std::shared_ptr<const OwnedMemory>& from,
                                                     const dnnl::memory::desc& desc);

 private:
  dnnl::engine engine_;
  dnnl::stream stream_;
  Precision precision_ = Precision::f32;
  std::atomic<std::size_t> current_bytes_{0};
  std::atomic<std::size_t> peak_bytes_{0};
  std::shared_ptr<float> allocate_bytes(std::size_t bytes);

  struct CachedWeights {
    std::uint64_t fingerprint;  // of the values, so that reused host memory is never mistaken
    std::size_t count;
    dnnl::memory::desc desc;
    std::weak_ptr<const OwnedMemory> memory;
  };
  std::vector<CachedWeights> weight_cache_;
  struct DerivedWeights {
    std::weak_ptr<const OwnedMemory> from;
    const OwnedMemory* from_address;
    dnnl::memory::desc desc;
    std::weak_ptr<const OwnedMemory> memory;
  };
  std::vector<DerivedWeights> derived_cache_;
};

}  // namespace tessera::cpu
