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
  bool host_memory() const override { return true; }
  std::size_t free_device_bytes() const override { return 0; }


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
  Tensor do_allocate(Shape shape, Layout layout, Contents contents) override;
  void do_upload(std::span<const float> host, Tensor& tensor) override;
  void do_download(const Tensor& tensor, std::span<float> host) override;
  std::unique_ptr<ConvolutionLayer> do_plan_convolution(const LayerSpec& spec, const ConvWeights& weights, Shape input,
                                                        Layout input_layout) override;
  std::unique_ptr<PoolingLayer> do_plan_pooling(const LayerSpec& spec, Pooling pooling, Shape input) override;
  std::unique_ptr<GramOperator> do_plan_gram(Shape features) override;
  void do_convert(const Tensor& source, Tensor& destination) override;
  double do_squared_distance(const Tensor& a, const Tensor& b, const Box& window, float grad_scale,
                             Tensor* grad_a) override;
  double do_window_sum_abs(const Tensor& a, const Box& window) override;
  double do_total_variation(const Tensor& image, float weight, Tensor& grad, const Box& counted) override;
  void do_copy_window(const Tensor& source, const Box& window, Tensor& destination, int x, int y) override;
  double do_dot(const Tensor& a, const Tensor& b) override;
  double do_sum_abs(const Tensor& a) override;
  void do_fill(Tensor& a, float value) override;
  void do_copy(const Tensor& source, Tensor& destination) override;
  void do_scale(Tensor& a, float factor) override;
  void do_axpy(float alpha, const Tensor& x, Tensor& y) override;
  void do_subtract(const Tensor& a, const Tensor& b, Tensor& d) override;
  void do_dot_products(std::span<const Tensor* const> rows, std::span<const Tensor* const> columns,
                       std::span<double> products) override;
  void do_combine(std::span<const Tensor* const> terms, std::span<const double> coefficients, Tensor& out) override;
  DoubleBuffer do_allocate_doubles(std::size_t count) override;
  void do_clear(DoubleBuffer& sums) override;
  void do_accumulate_double(const Tensor& values, DoubleBuffer& sums, std::size_t offset) override;
  void do_assign_from_double(const DoubleBuffer& sums, std::size_t offset, Tensor& values) override;
  void do_write_doubles(std::span<const double> values, DoubleBuffer& sums, std::size_t offset) override;
  void do_read_doubles(const DoubleBuffer& sums, std::size_t offset, std::span<double> values) override;
  void do_adam_update(Tensor& x, const Tensor& g, Tensor& m, Tensor& v, const AdamState& state) override;

  dnnl::engine engine_;
  dnnl::stream stream_;
  Precision precision_ = Precision::f32;
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
