// Convolution (+ fused ReLU) and pooling on cuDNN, Gram products on cuBLAS,
// each planned once for its shape: descriptors, algorithms, device weights
// and the workspace size are settled here and reused every iteration.
//
// cuDNN's legacy convolution API (deprecated in cuDNN 9, still complete) is
// used: its NHWC kernels with a heuristic choice of algorithm are what the
// frameworks' eager modes run, and it needs no graph building per shape.
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "backends/cuda/cuda_backend.hpp"
#include "backends/cuda/cuda_kernels.cuh"

namespace tessera::cuda {

namespace {

// The most workspace one algorithm may ask for. FFT and Winograd variants
// sometimes want gigabytes for a small gain; memory is what lets a GPU hold a
// large tile, so they are passed over above this.
constexpr std::size_t kMaxWorkspaceBytes = std::size_t(1) << 30;

cudnnDataType_t cudnn_type(DataType type) { return type == DataType::bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT; }

int conv_output_size(int input, int kernel, int stride, int pad) { return (input + 2 * pad - kernel) / stride + 1; }

// Owners of cuDNN descriptors: destroyed with the layer.
struct TensorDescriptor {
  cudnnTensorDescriptor_t handle = nullptr;
  TensorDescriptor() { TESSERA_CUDNN_CHECK(cudnnCreateTensorDescriptor(&handle)); }
  ~TensorDescriptor() { (void)cudnnDestroyTensorDescriptor(handle); }  // cannot fail on a valid handle
  TensorDescriptor(const TensorDescriptor&) = delete;
  TensorDescriptor& operator=(const TensorDescriptor&) = delete;
  void set_nhwc(const Shape& s, DataType type) {
    TESSERA_CUDNN_CHECK(
        cudnnSetTensor4dDescriptor(handle, CUDNN_TENSOR_NHWC, cudnn_type(type), 1, s.channels, s.height, s.width));
  }
};

struct FilterDescriptor {
  cudnnFilterDescriptor_t handle = nullptr;
  FilterDescriptor() { TESSERA_CUDNN_CHECK(cudnnCreateFilterDescriptor(&handle)); }
  ~FilterDescriptor() { (void)cudnnDestroyFilterDescriptor(handle); }
  FilterDescriptor(const FilterDescriptor&) = delete;
  FilterDescriptor& operator=(const FilterDescriptor&) = delete;
};

struct ConvolutionDescriptor {
  cudnnConvolutionDescriptor_t handle = nullptr;
  ConvolutionDescriptor() { TESSERA_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&handle)); }
  ~ConvolutionDescriptor() { (void)cudnnDestroyConvolutionDescriptor(handle); }
  ConvolutionDescriptor(const ConvolutionDescriptor&) = delete;
  ConvolutionDescriptor& operator=(const ConvolutionDescriptor&) = delete;
};

struct ActivationDescriptor {
  cudnnActivationDescriptor_t handle = nullptr;
  ActivationDescriptor() { TESSERA_CUDNN_CHECK(cudnnCreateActivationDescriptor(&handle)); }
  ~ActivationDescriptor() { (void)cudnnDestroyActivationDescriptor(handle); }
  ActivationDescriptor(const ActivationDescriptor&) = delete;
  ActivationDescriptor& operator=(const ActivationDescriptor&) = delete;
};

// Whether cuDNN refused a fused call for its configuration (its types,
// layouts or shapes), as opposed to failing: only these statuses, so that a
// bad pointer or a mismatched stream is still an error that names the call.
bool refused_configuration(cudnnStatus_t status) {
  switch (status) {
    case CUDNN_STATUS_NOT_SUPPORTED:
    case CUDNN_STATUS_BAD_PARAM:
#if CUDNN_MAJOR >= 9
    case CUDNN_STATUS_NOT_SUPPORTED_SHAPE:
    case CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE:
    case CUDNN_STATUS_NOT_SUPPORTED_LAYOUT:
#endif
      return true;
    default:
      return false;
  }
}

struct PoolingDescriptor {
  cudnnPoolingDescriptor_t handle = nullptr;
  PoolingDescriptor() { TESSERA_CUDNN_CHECK(cudnnCreatePoolingDescriptor(&handle)); }
  ~PoolingDescriptor() { (void)cudnnDestroyPoolingDescriptor(handle); }
  PoolingDescriptor(const PoolingDescriptor&) = delete;
  PoolingDescriptor& operator=(const PoolingDescriptor&) = delete;
};

bool is_tensor_op(cudnnMathType_t math) {
  return math == CUDNN_TENSOR_OP_MATH || math == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
}

// out = relu(out + bias[c]) over an NHWC map (c innermost): the fallback
// where cuDNN will not fuse them. In bf16 the convolution's result was
// already rounded once; the sum rounds again (the CPU adds the bias before
// its single rounding: within bf16's tolerance).
__global__ void bias_relu_kernel(Elements out, const float* bias, int channels, std::size_t n) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n;
       i += std::size_t(gridDim.x) * blockDim.x) {
    // NaN propagates, as in the fused call: a poisoned input shows either way.
    const float v = out.get(i) + bias[i % channels];
    out.set(i, v > 0.0f || v != v ? v : 0.0f);
  }
}

// ReLU's backward from its output: grad *= (output > 0), in place.
__global__ void relu_mask_kernel(Elements grad, Elements output, std::size_t n) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n;
       i += std::size_t(gridDim.x) * blockDim.x)
    if (!(output.get(i) > 0.0f)) grad.set(i, 0.0f);
}

class CudaConvolution final : public ConvolutionLayer {
 public:
  CudaConvolution(CudaBackend& backend, const LayerSpec& spec, const ConvWeights& weights, Shape input,
                  Layout input_layout)
      : backend_(backend), name_(spec.name), input_(input), input_layout_(input_layout), type_(backend.feature_type()) {
    if (input.channels != weights.in_channels)
      fail("internal: ", spec.name, " expects ", weights.in_channels, " input channels, got ", input.channels);
    if (input.height + 2 * spec.pad < spec.kernel || input.width + 2 * spec.pad < spec.kernel)
      fail("the image is too small for layer ", spec.name, ": its input is ", input.width, "x", input.height,
           " px at that depth");
    output_ = {weights.out_channels, conv_output_size(input.height, spec.kernel, spec.stride, spec.pad),
               conv_output_size(input.width, spec.kernel, spec.stride, spec.pad)};
    macs_ = double(output_.elements()) * weights.in_channels * weights.kernel_h * weights.kernel_w;

    // A planar input (the image) is staged through NHWC, as on the CPU:
    // one layout for every convolution keeps cuDNN on its NHWC kernels.
    if (input_layout == Layout::planar) {
      staged_input_ = backend_.allocate(input, Layout::features, Backend::Contents::unset);
      staged_gradient_ = backend_.allocate(input, Layout::features, Backend::Contents::unset);
    }
    x_.set_nhwc(input, type_);
    y_.set_nhwc(output_, type_);
    TESSERA_CUDNN_CHECK(cudnnSetFilter4dDescriptor(w_.handle, cudnn_type(type_), CUDNN_TENSOR_NHWC,
                                                   weights.out_channels, weights.in_channels, weights.kernel_h,
                                                   weights.kernel_w));
    // f32 is the reference: FMA math keeps TF32 out (cuDNN's default math
    // would allow it on Ampere and later). bf16 runs on the tensor cores.
    const cudnnMathType_t math = type_ == DataType::bf16 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH;
    for (auto* conv : {&forward_conv_, &backward_conv_}) {
      TESSERA_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(conv->handle, spec.pad, spec.pad, spec.stride, spec.stride,
                                                          1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
      TESSERA_CUDNN_CHECK(cudnnSetConvolutionMathType(conv->handle, math));
    }
    int n = 0, c = 0, h = 0, w = 0;
    TESSERA_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(forward_conv_.handle, x_.handle, w_.handle, &n, &c, &h, &w));
    if (n != 1 || c != output_.channels || h != output_.height || w != output_.width)
      fail("internal: cuDNN computes another output size for ", spec.name, " (", c, "x", h, "x", w, ", expected ",
           output_.describe(), ")");

    choose_forward_algorithm(math);
    choose_backward_algorithm(math);

    weights_ = backend_.device_weights(weights, type_);
    bias_ = backend_.allocate_bytes(weights.bias.size() * sizeof(float));
    TESSERA_CUDA_CHECK(cudaMemcpyAsync(bias_.get(), weights.bias.data(), weights.bias.size() * sizeof(float),
                                       cudaMemcpyHostToDevice, backend_.stream()));
    // The fused call takes the bias in the output's type (cuDNN's
    // configurations with 16-bit data have a 16-bit bias).
    if (type_ == DataType::bf16) {
      std::vector<std::uint16_t> narrow(weights.bias.size());
      for (std::size_t k = 0; k < narrow.size(); ++k) narrow[k] = float_to_bf16_bits(weights.bias[k]);
      fused_bias_ = backend_.allocate_bytes(narrow.size() * sizeof(std::uint16_t));
      TESSERA_CUDA_CHECK(cudaMemcpyAsync(fused_bias_.get(), narrow.data(), narrow.size() * sizeof(std::uint16_t),
                                         cudaMemcpyHostToDevice, backend_.stream()));
    } else {
      fused_bias_ = bias_;
    }
    TESSERA_CUDNN_CHECK(
        cudnnSetTensor4dDescriptor(bias_desc_.handle, CUDNN_TENSOR_NHWC, cudnn_type(type_), 1, output_.channels, 1, 1));
    // NaN propagates, so that a poisoned input shows in the result.
    TESSERA_CUDNN_CHECK(cudnnSetActivationDescriptor(relu_.handle, CUDNN_ACTIVATION_RELU, CUDNN_PROPAGATE_NAN, 0.0));
    // The caller may free its host copy when planning returns.
    TESSERA_CUDA_CHECK(cudaStreamSynchronize(backend_.stream()));
  }

  Shape output_shape() const override { return output_; }
  double forward_macs() const override { return macs_; }

  void forward(const Tensor& input, Tensor& output) override {
    check(input, input_, input_layout_, "input");
    check(output, output_, Layout::features, "output");
    const Tensor* source = &input;
    if (input_layout_ == Layout::planar) {
      backend_.convert(input, staged_input_);
      source = &staged_input_;
    }
    const float one = 1.0f, zero = 0.0f;
    if (fused_) {
      // relu(conv(x) + 0 * z + bias) in one pass over the output, z being
      // the output itself (alpha2 = 0: never read for its values).
      const cudnnStatus_t status = cudnnConvolutionBiasActivationForward(
          backend_.cudnn(), &one, x_.handle, source->data(), w_.handle, weights_.get(), forward_conv_.handle,
          forward_algorithm_, backend_.workspace(), forward_workspace_, &zero, y_.handle, output.data(),
          bias_desc_.handle, fused_bias_.get(), relu_.handle, y_.handle, output.data());
      if (status == CUDNN_STATUS_SUCCESS) return;
      if (!refused_configuration(status))
        checked_status<Cudnn>(status, "cudnnConvolutionBiasActivationForward", __FILE__, __LINE__);
      // This configuration has no fused kernel: convolution, then our own
      // bias and ReLU, from now on.
      fused_ = false;
    }
    TESSERA_CUDNN_CHECK(cudnnConvolutionForward(backend_.cudnn(), &one, x_.handle, source->data(), w_.handle,
                                                weights_.get(), forward_conv_.handle, forward_algorithm_,
                                                backend_.workspace(), forward_workspace_, &zero, y_.handle,
                                                output.data()));
    const std::size_t count = output_.elements();
    bias_relu_kernel<<<blocks_for(count, kThreadsPerBlock, 8 * backend_.multiprocessors()), kThreadsPerBlock, 0,
                       backend_.stream()>>>(Elements::of(output), static_cast<const float*>(bias_.get()),
                                            output_.channels, count);
    TESSERA_CUDA_CHECK_LAUNCH("bias_relu");
  }

  void backward(const Tensor& output, Tensor& grad_output, Tensor& grad_input) override {
    check(output, output_, Layout::features, "output");
    check(grad_output, output_, Layout::features, "output gradient");
    check(grad_input, input_, input_layout_, "input gradient");
    const std::size_t count = output_.elements();
    relu_mask_kernel<<<blocks_for(count, kThreadsPerBlock, 8 * backend_.multiprocessors()), kThreadsPerBlock, 0,
                       backend_.stream()>>>(Elements::of(grad_output), Elements::of(output), count);
    TESSERA_CUDA_CHECK_LAUNCH("relu_mask");
    Tensor& destination = input_layout_ == Layout::planar ? staged_gradient_ : grad_input;
    const float one = 1.0f, zero = 0.0f;
    TESSERA_CUDNN_CHECK(cudnnConvolutionBackwardData(backend_.cudnn(), &one, w_.handle, weights_.get(), y_.handle,
                                                     grad_output.data(), backward_conv_.handle, backward_algorithm_,
                                                     backend_.workspace(), backward_workspace_, &zero, x_.handle,
                                                     destination.data()));
    if (input_layout_ == Layout::planar) backend_.convert(staged_gradient_, grad_input);
  }

 private:
  void check(const Tensor& t, const Shape& shape, Layout layout, const char* what) const {
    if (!(t.shape() == shape) || t.layout() != layout)
      fail("internal: ", name_, " planned for ", what, " ", shape.describe(), " got ", t.shape().describe());
    if (layout == Layout::features && t.type() != type_) fail("internal: ", name_, " planned for another precision");
  }

  // Among the algorithms cuDNN's heuristics offer (working, deterministic,
  // within the workspace bound, and in f32 without tensor-op math), one
  // fixed algorithm is preferred over the heuristics' ranking: the tiles of
  // a render have different shapes, and the heuristics could give each a
  // different algorithm, hence different rounding, and a tiled render would
  // no longer equal the whole one (L-BFGS magnifies such differences; see
  // tests/support/render_cases.hpp). Failing that, the best ranked.
  template <typename Perf, typename Algorithm>
  static int pick_algorithm(const Perf* found, int returned, cudnnMathType_t math, Algorithm preferred) {
    int first = -1, first_tensor_op = -1, first_nondeterministic = -1;
    for (int i = 0; i < returned; ++i) {
      const Perf& p = found[i];
      if (p.status != CUDNN_STATUS_SUCCESS || p.memory > kMaxWorkspaceBytes) continue;
      if (math == CUDNN_FMA_MATH && is_tensor_op(p.mathType)) continue;
      if (p.determinism != CUDNN_DETERMINISTIC) {
        if (first_nondeterministic < 0) first_nondeterministic = i;
        continue;
      }
      // (in bf16 only on the tensor cores: the same algorithm is listed
      // with FMA math too, several times slower)
      if (p.algo == preferred && (math == CUDNN_FMA_MATH || is_tensor_op(p.mathType))) return i;
      if (first < 0) first = i;
      if (first_tensor_op < 0 && math != CUDNN_FMA_MATH && is_tensor_op(p.mathType)) first_tensor_op = i;
    }
    // A render still runs without a deterministic algorithm; only its
    // repeatability (and tiled-equals-whole) would suffer.
    if (first_tensor_op >= 0) return first_tensor_op;
    return first >= 0 ? first : first_nondeterministic;
  }

  // What the heuristics returned, for the message when none is usable:
  // which filter ruled each out is the first thing to know.
  template <typename Perf>
  static std::string describe_offers(const Perf* found, int returned) {
    std::string text;
    for (int i = 0; i < returned; ++i) {
      const Perf& p = found[i];
      text += (i ? "; " : "") + std::string("algorithm ") + std::to_string(int(p.algo)) + " " +
              cudnnGetErrorString(p.status) + ", math " + std::to_string(int(p.mathType)) +
              (p.determinism == CUDNN_DETERMINISTIC ? ", deterministic" : ", non-deterministic") + ", " +
              std::to_string(p.memory >> 20) + " MiB";
    }
    return text.empty() ? "nothing" : text + " (workspace limit " + std::to_string(kMaxWorkspaceBytes >> 20) +
                                          " MiB; f32 excludes tensor-op math)";
  }

  void choose_forward_algorithm(cudnnMathType_t math) {
    cudnnConvolutionFwdAlgoPerf_t found[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int returned = 0;
    TESSERA_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(backend_.cudnn(), x_.handle, w_.handle,
                                                               forward_conv_.handle, y_.handle,
                                                               CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &returned, found));
    const int pick = pick_algorithm(found, returned, math, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM);
    if (pick >= 0) {
      const auto& p = found[pick];
      forward_algorithm_ = p.algo;
      if (math != CUDNN_FMA_MATH) TESSERA_CUDNN_CHECK(cudnnSetConvolutionMathType(forward_conv_.handle, p.mathType));
      TESSERA_CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(backend_.cudnn(), x_.handle, w_.handle,
                                                                  forward_conv_.handle, y_.handle, p.algo,
                                                                  &forward_workspace_));
      backend_.reserve_workspace(forward_workspace_);
      return;
    }
    fail("cuDNN offers no forward algorithm for ", name_, " (", input_.describe(), " -> ", output_.describe(),
         ", ", type_ == DataType::bf16 ? "bf16" : "f32", ") that is usable here; it offered: ",
         describe_offers(found, returned));
  }

  void choose_backward_algorithm(cudnnMathType_t math) {
    cudnnConvolutionBwdDataAlgoPerf_t found[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    int returned = 0;
    TESSERA_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(
        backend_.cudnn(), w_.handle, y_.handle, backward_conv_.handle, x_.handle,
        CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &returned, found));
    const int pick = pick_algorithm(found, returned, math, CUDNN_CONVOLUTION_BWD_DATA_ALGO_1);
    if (pick >= 0) {
      const auto& p = found[pick];
      backward_algorithm_ = p.algo;
      if (math != CUDNN_FMA_MATH) TESSERA_CUDNN_CHECK(cudnnSetConvolutionMathType(backward_conv_.handle, p.mathType));
      TESSERA_CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(backend_.cudnn(), w_.handle, y_.handle,
                                                                       backward_conv_.handle, x_.handle, p.algo,
                                                                       &backward_workspace_));
      backend_.reserve_workspace(backward_workspace_);
      return;
    }
    fail("cuDNN offers no backward-data algorithm for ", name_, " (", input_.describe(), " -> ", output_.describe(),
         ", ", type_ == DataType::bf16 ? "bf16" : "f32", ") that is usable here; it offered: ",
         describe_offers(found, returned));
  }

  CudaBackend& backend_;
  std::string name_;
  Shape input_;
  Layout input_layout_;
  DataType type_;
  Shape output_;
  double macs_ = 0.0;
  Tensor staged_input_, staged_gradient_;  // NHWC copies for a planar input
  TensorDescriptor x_, y_;
  FilterDescriptor w_;
  ConvolutionDescriptor forward_conv_, backward_conv_;
  cudnnConvolutionFwdAlgo_t forward_algorithm_{};
  cudnnConvolutionBwdDataAlgo_t backward_algorithm_{};
  std::size_t forward_workspace_ = 0, backward_workspace_ = 0;
  std::shared_ptr<void> weights_;  // KRSC, feature type, shared through the backend's cache
  std::shared_ptr<void> bias_;     // f32
  std::shared_ptr<void> fused_bias_;  // the feature type, for the fused call
  TensorDescriptor bias_desc_;
  ActivationDescriptor relu_;
  bool fused_ = true;  // until cuDNN refuses this configuration
};

// Pooling whose rounded-up (ceil) output size cuDNN cannot express: its
// descriptor has symmetric padding only. Max picks the first largest value
// of the window (row-major), as oneDNN does; average excludes the padding
// and the part of the window past the edge. Both backward passes gather
// (each input element adds the outputs whose window holds it), so no two
// threads write one element and the result is deterministic.
struct PoolGeometry {
  int channels, in_h, in_w, out_h, out_w, k, s, p;
};

__device__ inline void window_bounds(const PoolGeometry& g, int oy, int ox, int& y0, int& y1, int& x0, int& x1) {
  y0 = max(oy * g.s - g.p, 0);
  x0 = max(ox * g.s - g.p, 0);
  y1 = min(oy * g.s - g.p + g.k, g.in_h);
  x1 = min(ox * g.s - g.p + g.k, g.in_w);
}

__device__ inline std::size_t argmax_of(const PoolGeometry& g, Elements in, int c, int oy, int ox) {
  int y0, y1, x0, x1;
  window_bounds(g, oy, ox, y0, y1, x0, x1);
  std::size_t best = (std::size_t(y0) * g.in_w + x0) * g.channels + c;
  float largest = in.get(best);
  for (int y = y0; y < y1; ++y)
    for (int x = x0; x < x1; ++x) {
      std::size_t at = (std::size_t(y) * g.in_w + x) * g.channels + c;
      float v = in.get(at);
      if (v > largest) {
        largest = v;
        best = at;
      }
    }
  return best;
}

__global__ void pool_forward_kernel(PoolGeometry g, bool max_pooling, Elements in, Elements out) {
  const std::size_t n = std::size_t(g.out_h) * g.out_w * g.channels;
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n;
       i += std::size_t(gridDim.x) * blockDim.x) {
    int c = int(i % g.channels), ox = int((i / g.channels) % g.out_w), oy = int(i / (std::size_t(g.channels) * g.out_w));
    if (max_pooling) {
      out.set(i, in.get(argmax_of(g, in, c, oy, ox)));
      continue;
    }
    int y0, y1, x0, x1;
    window_bounds(g, oy, ox, y0, y1, x0, x1);
    float sum = 0.0f;
    for (int y = y0; y < y1; ++y)
      for (int x = x0; x < x1; ++x) sum += in.get((std::size_t(y) * g.in_w + x) * g.channels + c);
    out.set(i, sum / float((y1 - y0) * (x1 - x0)));
  }
}

__global__ void pool_backward_kernel(PoolGeometry g, bool max_pooling, Elements in, Elements grad_out,
                                     Elements grad_in) {
  const std::size_t n = std::size_t(g.in_h) * g.in_w * g.channels;
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n;
       i += std::size_t(gridDim.x) * blockDim.x) {
    int c = int(i % g.channels), x = int((i / g.channels) % g.in_w), y = int(i / (std::size_t(g.channels) * g.in_w));
    // Outputs whose window [o*s - p, o*s - p + k) holds y.
    // o*s - p <= y < o*s - p + k, i.e. (y + p - k)/s < o <= (y + p)/s.
    int oy0 = y + g.p - g.k < 0 ? 0 : (y + g.p - g.k) / g.s + 1, oy1 = min(g.out_h - 1, (y + g.p) / g.s);
    int ox0 = x + g.p - g.k < 0 ? 0 : (x + g.p - g.k) / g.s + 1, ox1 = min(g.out_w - 1, (x + g.p) / g.s);
    float sum = 0.0f;
    for (int oy = oy0; oy <= oy1; ++oy)
      for (int ox = ox0; ox <= ox1; ++ox) {
        std::size_t o = (std::size_t(oy) * g.out_w + ox) * g.channels + c;
        if (max_pooling) {
          if (argmax_of(g, in, c, oy, ox) == i) sum += grad_out.get(o);
        } else {
          int y0, y1, x0, x1;
          window_bounds(g, oy, ox, y0, y1, x0, x1);
          sum += grad_out.get(o) / float((y1 - y0) * (x1 - x0));
        }
      }
    grad_in.set(i, sum);
  }
}

class CudaPooling final : public PoolingLayer {
 public:
  CudaPooling(CudaBackend& backend, const LayerSpec& spec, Pooling pooling, Shape input)
      : backend_(backend), name_(spec.name), input_(input), max_(pooling == Pooling::max),
        type_(backend.feature_type()) {
    const int k = spec.kernel, s = spec.stride, p = spec.pad;
    auto out_size = [&](int in) {
      if (!spec.ceil_mode) return (in + 2 * p - k) / s + 1;
      // Caffe's (and PyTorch's ceil_mode) rule: round up, but the last window
      // must start inside the image (or its left padding).
      int out = (in + 2 * p - k + s - 1) / s + 1;
      if ((out - 1) * s >= in + p) --out;
      return out;
    };
    output_ = {input.channels, out_size(input.height), out_size(input.width)};
    if (output_.height < 1 || output_.width < 1 || input.height < k - 2 * p || input.width < k - 2 * p)
      fail("the image is too small for layer ", spec.name, ": its input is ", input.width, "x", input.height,
           " px at that depth");
    geometry_ = {input.channels, input.height, input.width, output_.height, output_.width, k, s, p};

    x_.set_nhwc(input, type_);
    y_.set_nhwc(output_, type_);
    TESSERA_CUDNN_CHECK(cudnnSetPooling2dDescriptor(
        pooling_.handle, max_ ? CUDNN_POOLING_MAX_DETERMINISTIC : CUDNN_POOLING_AVERAGE_COUNT_EXCLUDE_PADDING,
        CUDNN_NOT_PROPAGATE_NAN, k, k, p, p, s, s));
    int n = 0, c = 0, h = 0, w = 0;
    TESSERA_CUDNN_CHECK(cudnnGetPooling2dForwardOutputDim(pooling_.handle, x_.handle, &n, &c, &h, &w));
    // Padded pooling (none in the backbones) stays on our kernels, whose
    // treatment of the padding is oneDNN's by construction.
    use_cudnn_ = n == 1 && c == output_.channels && h == output_.height && w == output_.width && p == 0 &&
                 std::getenv("TESSERA_CUDA_OWN_POOLING") == nullptr;  // lets the tests compare both paths
  }

  Shape output_shape() const override { return output_; }

  void forward(const Tensor& input, Tensor& output) override {
    check(input, input_, "input");
    check(output, output_, "output");
    // cuDNN's backward needs the forward's input and output again; the
    // training network keeps both until its backward pass (held by address
    // only, so that releasing the network's buffers really frees them).
    last_input_ = input.data();
    last_output_ = output.data();
    if (use_cudnn_) {
      const float one = 1.0f, zero = 0.0f;
      cudnnStatus_t status = cudnnPoolingForward(backend_.cudnn(), pooling_.handle, &one, x_.handle, input.data(),
                                                 &zero, y_.handle, output.data());
      if (status == CUDNN_STATUS_SUCCESS) return;
      // A cuDNN without this configuration (bf16 NHWC pooling is newer than
      // the rest): our kernels compute the same thing, forward and backward.
      if (status != CUDNN_STATUS_NOT_SUPPORTED)
        fail("cuDNN call cudnnPoolingForward failed for ", name_, ": ", cudnnGetErrorString(status), " (status ",
             int(status), ")");
      use_cudnn_ = false;
    }
    pool_forward_kernel<<<blocks_for(output_.elements(), kThreadsPerBlock, 8 * backend_.multiprocessors()),
                          kThreadsPerBlock, 0, backend_.stream()>>>(geometry_, max_, Elements::of(input),
                                                                    Elements::of(output));
    TESSERA_CUDA_CHECK_LAUNCH("pooling forward");
  }

  void backward(const Tensor& grad_output, Tensor& grad_input) override {
    check(grad_output, output_, "output gradient");
    check(grad_input, input_, "input gradient");
    if (!last_input_) fail("internal: ", name_, " backward before forward");
    Tensor input(input_, Layout::features, std::shared_ptr<float>(const_cast<float*>(last_input_), [](float*) {}),
                 input_.elements(), type_);
    if (use_cudnn_) {
      const float one = 1.0f, zero = 0.0f;
      cudnnStatus_t status = cudnnPoolingBackward(backend_.cudnn(), pooling_.handle, &one, y_.handle, last_output_,
                                                  y_.handle, grad_output.data(), x_.handle, last_input_, &zero,
                                                  x_.handle, grad_input.data());
      if (status == CUDNN_STATUS_SUCCESS) return;
      // As in forward: our kernel computes the same gradient (it finds the
      // same maxima in the input).
      if (status != CUDNN_STATUS_NOT_SUPPORTED)
        fail("cuDNN call cudnnPoolingBackward failed for ", name_, ": ", cudnnGetErrorString(status), " (status ",
             int(status), ")");
      use_cudnn_ = false;
    }
    pool_backward_kernel<<<blocks_for(input_.elements(), kThreadsPerBlock, 8 * backend_.multiprocessors()),
                           kThreadsPerBlock, 0, backend_.stream()>>>(geometry_, max_, Elements::of(input),
                                                                     Elements::of(grad_output),
                                                                     Elements::of(grad_input));
    TESSERA_CUDA_CHECK_LAUNCH("pooling backward");
  }

 private:
  void check(const Tensor& t, const Shape& shape, const char* what) const {
    if (!(t.shape() == shape) || t.layout() != Layout::features || t.type() != type_)
      fail("internal: ", name_, " planned for ", what, " ", shape.describe(), " got ", t.shape().describe());
  }

  CudaBackend& backend_;
  std::string name_;
  Shape input_, output_;
  bool max_;
  DataType type_;
  PoolGeometry geometry_{};
  bool use_cudnn_ = false;
  TensorDescriptor x_, y_;
  PoolingDescriptor pooling_;
  const float* last_input_ = nullptr;
  const float* last_output_ = nullptr;
};

__global__ void round_to_bf16_kernel(const float* from, __nv_bfloat16* to, std::size_t n) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n;
       i += std::size_t(gridDim.x) * blockDim.x)
    to[i] = __float2bfloat16_rn(from[i]);
}

// Features are NHWC: a window's row is a run of (width x C) values, and a
// full-width window is one (positions x C) row-major matrix, which cuBLAS
// (column-major) sees as F: C x positions with leading dimension C. Then
// G = s F F^T is one product; a narrower window takes one per row, adding.
class CudaGram final : public GramOperator {
 public:
  CudaGram(CudaBackend& backend, Shape features)
      : GramOperator(features, backend.feature_type()), backend_(backend) {
    if (type() == DataType::bf16)
      // cuBLAS multiplies operands of one type: the adjoint's D (f32) is
      // rounded into this for the bf16 product F D.
      d_bf16_ = backend_.allocate_bytes(std::size_t(shape().channels) * shape().channels * 2);
  }


 private:
  void do_forward(const Tensor& features, const Box& window, float scale, Tensor& gram) override {
    const bool full_rows = window.x0 == 0 && window.width() == shape().width;
    const int runs = full_rows ? 1 : window.height();
    const int positions = full_rows ? int(window.area()) : window.width();
    for (int r = 0; r < runs; ++r)
      gram_product(element(features, (std::size_t(window.y0 + r) * shape().width + window.x0) * shape().channels),
                   positions, scale, r == 0 ? 0.0f : 1.0f, gram.data());
  }

  void do_forward_contiguous(const Tensor& features, const Box& window, float scale, Tensor& gram) override {
    const std::size_t element_bytes = bytes_per_element(type());
    const std::size_t positions = window.area();
    if (block_capacity_ < positions) {
      // Grows to the largest block once (the first evaluation), then stays,
      // as on the CPU; the blocks are at most 256 px of the image square.
      block_ = backend_.allocate_bytes(positions * shape().channels * element_bytes);
      block_capacity_ = positions;
    }
    const std::size_t run_bytes = std::size_t(window.width()) * shape().channels * element_bytes;
    TESSERA_CUDA_CHECK(cudaMemcpy2DAsync(
        block_.get(), run_bytes,
        element(features, (std::size_t(window.y0) * shape().width + window.x0) * shape().channels),
        std::size_t(shape().width) * shape().channels * element_bytes, run_bytes, window.height(),
        cudaMemcpyDeviceToDevice, backend_.stream()));
    gram_product(block_.get(), int(positions), scale, 0.0f, gram.data());
  }

  void do_backward(const Tensor& features, const Box& window, const Tensor& d, float scale,
                   Tensor& grad_features) override {
    const int c = shape().channels;
    const void* d_operand = d.data();
    if (type() == DataType::bf16) {
      const std::size_t n = std::size_t(c) * c;
      round_to_bf16_kernel<<<blocks_for(n, kThreadsPerBlock, 8 * backend_.multiprocessors()), kThreadsPerBlock, 0,
                             backend_.stream()>>>(d.data(), static_cast<__nv_bfloat16*>(d_bf16_.get()), n);
      TESSERA_CUDA_CHECK_LAUNCH("Gram adjoint rounding");
      d_operand = d_bf16_.get();
    }
    const bool full_rows = window.x0 == 0 && window.width() == shape().width;
    const int runs = full_rows ? 1 : window.height();
    const int positions = full_rows ? int(window.area()) : window.width();
    const cudaDataType_t operand_type = type() == DataType::bf16 ? CUDA_R_16BF : CUDA_R_32F;
    const float one = 1.0f;
    const std::size_t offset = (std::size_t(window.y0) * shape().width + window.x0) * c;
    // dF (C x P) += s D F; D is symmetric, so this is (F^T D)^T of the
    // row-major (P x C) view. A narrower window is one product per row, as
    // one batched call (rows are W x C apart; their outputs never overlap).
    TESSERA_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        backend_.cublas(), CUBLAS_OP_N, CUBLAS_OP_N, c, positions, c, &scale, d_operand, operand_type, c, 0,
        element(features, offset), operand_type, c, (long long)shape().width * c, &one, element(grad_features, offset), operand_type, c,
        (long long)shape().width * c, runs, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  }

  static void* element(const Tensor& t, std::size_t index) {
    return const_cast<char*>(reinterpret_cast<const char*>(t.data())) + index * bytes_per_element(t.type());
  }

  // G (C x C, f32) = scale F F^T + beta G, F: C x positions, leading dim C.
  // Products of bf16 accumulate in f32 (compute type 32F), as on the CPU.
  void gram_product(const void* f, int positions, float scale, float beta, float* gram) {
    const int c = shape().channels;
    const cudaDataType_t operand_type = type() == DataType::bf16 ? CUDA_R_16BF : CUDA_R_32F;
    TESSERA_CUBLAS_CHECK(cublasGemmEx(backend_.cublas(), CUBLAS_OP_N, CUBLAS_OP_T, c, c, positions, &scale, f, operand_type, c,
                                      f, operand_type, c, &beta, gram, CUDA_R_32F, c, CUBLAS_COMPUTE_32F,
                                      CUBLAS_GEMM_DEFAULT));
  }

  CudaBackend& backend_;
  std::shared_ptr<void> d_bf16_;
  std::shared_ptr<void> block_;  // forward_contiguous's copy of a window
  std::size_t block_capacity_ = 0;
};

}  // namespace

std::unique_ptr<ConvolutionLayer> CudaBackend::do_plan_convolution(const LayerSpec& spec, const ConvWeights& weights,
                                                                Shape input, Layout input_layout) {
  return std::make_unique<CudaConvolution>(*this, spec, weights, input, input_layout);
}

std::unique_ptr<PoolingLayer> CudaBackend::do_plan_pooling(const LayerSpec& spec, Pooling pooling, Shape input) {
  return std::make_unique<CudaPooling>(*this, spec, pooling, input);
}

std::unique_ptr<GramOperator> CudaBackend::do_plan_gram(Shape features) {
  return std::make_unique<CudaGram>(*this, features);
}

}  // namespace tessera::cuda
