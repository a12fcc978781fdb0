// The CUDA backend: cuDNN for convolution and pooling (NHWC), cuBLAS for the
// Gram products, kernels of our own for the element-wise work, the losses'
// reductions, total variation and Adam. Every op runs on one stream of one
// GPU; ops that return a value (reductions) or touch host memory wait for
// it, all others only enqueue.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backends/cuda/cuda_checks.hpp"
#include "tessera/backend.hpp"

namespace tessera::cuda {

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  std::string name() const override { return "cuda"; }
  void set_precision(Precision precision) override;
  Precision precision() const override { return precision_; }
  std::vector<std::string> describe() const override;
  void set_threads(int) override {}  // the GPU's parallelism is not set in threads
  bool host_memory() const override { return false; }
  std::size_t free_device_bytes() const override;


  // --- for the layers (cuda_layers.cu)
  int device() const { return device_; }
  cudaStream_t stream() const { return stream_; }
  cudnnHandle_t cudnn() const { return cudnn_; }
  cublasHandle_t cublas() const { return cublas_; }
  DataType feature_type() const { return precision_ == Precision::bf16 ? DataType::bf16 : DataType::f32; }
  // Device memory counted in the peak and freed with the last owner.
  std::shared_ptr<void> allocate_bytes(std::size_t bytes);
  // One cuDNN workspace for every layer (they run one after another on one
  // stream): planning grows it to the largest need, running never does.
  void reserve_workspace(std::size_t bytes);
  void* workspace() const { return workspace_.get(); }
  std::size_t workspace_bytes() const { return workspace_bytes_; }
  // A convolution's weights as the layers want them (KRSC, the feature
  // type), shared by every layer planned from the same values: the style
  // targets' network and the render's hold the backbone once.
  std::shared_ptr<void> device_weights(const ConvWeights& weights, DataType type);
  // The multiprocessor count, to size grid-stride launches.
  int multiprocessors() const { return multiprocessors_; }

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

  // Reductions end in one double per launch: blocks write partial sums in
  // a fixed order and one block adds them, so a value never depends on
  // scheduling (tiled renders rely on bit-identical sums).
  double finish_sum(int blocks);
  int reduction_blocks(std::size_t elements) const;
  void synchronize(const char* what);
  void release();
  // A device buffer of at least `bytes`, grown (never shrunk) as needed.
  void* device_scratch(std::shared_ptr<void>& buffer, std::size_t& capacity, std::size_t bytes);

  int device_ = 0;
  int multiprocessors_ = 0;
  int compute_major_ = 0;
  std::string device_name_;
  cudaStream_t stream_ = nullptr;
  cudnnHandle_t cudnn_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  Precision precision_ = Precision::f32;

  std::shared_ptr<void> workspace_;
  std::size_t workspace_bytes_ = 0;
  std::shared_ptr<void> partials_;  // double[kMaxReductionBlocks + 1]
  double* result_host_ = nullptr;   // pinned
  std::shared_ptr<void> scratch_;   // device planar f32 for uploads/downloads of other layouts
  std::size_t scratch_capacity_ = 0;
  std::shared_ptr<void> products_scratch_;  // dot_products' partial sums and results
  std::size_t products_capacity_ = 0;
  std::shared_ptr<void> combine_scratch_;   // combine's term pointers and coefficients
  std::size_t combine_capacity_ = 0;

  struct CachedWeights {
    std::uint64_t fingerprint;
    std::size_t count;
    DataType type;
    std::weak_ptr<void> memory;
  };
  std::vector<CachedWeights> weight_cache_;
};

// Grid-stride launches never need more blocks than fill the GPU a few times.
constexpr int kThreadsPerBlock = 256;
constexpr int kMaxReductionBlocks = 1024;

}  // namespace tessera::cuda
