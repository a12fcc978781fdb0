// Convolution (+ fused ReLU), pooling and Gram products on oneDNN, each
// planned once for its shape: primitive descriptors, primitives, reordered
// weights and workspaces are made here and reused every iteration.
#include <algorithm>
#include <cstring>
#include <map>

#include "backends/cpu/cpu_backend.hpp"

namespace tessera::cpu {

using dnnl::algorithm;
using dnnl::memory;
using dnnl::prop_kind;
using tag = memory::format_tag;

namespace {

int conv_output_size(int input, int kernel, int stride, int pad) {
  return (input + 2 * pad - kernel) / stride + 1;
}

class CpuConvolution final : public ConvolutionLayer {
 public:
  CpuConvolution(CpuBackend& backend, const LayerSpec& spec, const ConvWeights& weights, Shape input,
                 Layout input_layout)
      : backend_(backend), input_(input), input_layout_(input_layout) {
    if (input.channels != weights.in_channels)
      fail("internal: ", spec.name, " expects ", weights.in_channels, " input channels, got ", input.channels);
    output_ = {weights.out_channels, conv_output_size(input.height, spec.kernel, spec.stride, spec.pad),
               conv_output_size(input.width, spec.kernel, spec.stride, spec.pad)};
    // (Integer division rounds toward zero, so an input smaller than the
    // kernel would still give one output: test the input itself.)
    if (input.height + 2 * spec.pad < spec.kernel || input.width + 2 * spec.pad < spec.kernel)
      fail("the image is too small for layer ", spec.name, ": its input is ", input.width, "x", input.height,
           " px at that depth");
    macs_ = double(output_.elements()) * weights.in_channels * weights.kernel_h * weights.kernel_w;

    TESSERA_CHECK_THROWING(Dnnl, ("planning convolution " + spec.name).c_str(), [&] {
      const auto& engine = backend_.engine();
      memory::dims strides = {spec.stride, spec.stride};
      memory::dims padding = {spec.pad, spec.pad};
      // oneDNN's fast convolutions want NHWC on both sides; a planar image
      // (the first layer's input) would fall back to its reference kernel,
      // 50x slower. So the first layer stages the image through NHWC
      // buffers: one cheap reorder each way.
      const DataType type = backend_.feature_type();
      auto src_md = CpuBackend::describe_memory(input, Layout::features, type);
      if (input_layout == Layout::planar) {
        staged_input_ = backend_.allocate(input, Layout::features, Backend::Contents::unset);
        staged_gradient_ = backend_.allocate(input, Layout::features, Backend::Contents::unset);
      }
      auto dst_md = CpuBackend::describe_memory(output_, Layout::features, type);
      memory::desc weights_any({weights.out_channels, weights.in_channels, weights.kernel_h, weights.kernel_w},
                               CpuBackend::dnnl_type(type), tag::any);
      memory::desc bias_md({weights.out_channels}, memory::data_type::f32, tag::x);

      dnnl::post_ops relu;
      relu.append_eltwise(1.0f, algorithm::eltwise_relu, 0.0f, 0.0f);
      dnnl::primitive_attr attr;
      attr.set_post_ops(relu);
      dnnl::convolution_forward::desc fwd_desc(prop_kind::forward_training, algorithm::convolution_direct,
                                               src_md, weights_any, bias_md, dst_md, strides, padding,
                                               padding);
      dnnl::convolution_forward::primitive_desc fwd_pd(fwd_desc, attr, engine);

      dnnl::convolution_backward_data::desc bwd_desc(algorithm::convolution_direct, src_md, weights_any,
                                                     dst_md, strides, padding, padding);
      dnnl::convolution_backward_data::primitive_desc bwd_pd(bwd_desc, engine, fwd_pd);

      // ReLU backward from its output: grad *= (output > 0).
      dnnl::eltwise_forward::desc relu_fwd_desc(prop_kind::forward_training,
                                                algorithm::eltwise_relu_use_dst_for_bwd, dst_md, 0.0f);
      dnnl::eltwise_forward::primitive_desc relu_fwd_pd(relu_fwd_desc, engine);
      dnnl::eltwise_backward::desc relu_bwd_desc(algorithm::eltwise_relu_use_dst_for_bwd, dst_md, dst_md,
                                                 0.0f);
      dnnl::eltwise_backward::primitive_desc relu_bwd_pd(relu_bwd_desc, engine, relu_fwd_pd);

      // Weights in the layout the forward primitive prefers, reordered once.
      // The backward layout (oneDNN wants another) is made from that copy at
      // the first backward pass: a network that only computes targets never
      // holds it, and the caller's host copy can be freed before it exists.
      forward_weights_ = backend_.reordered_weights(weights, fwd_pd.weights_desc());
      backward_weights_desc_ = bwd_pd.weights_desc();
      bias_ = backend_.allocate_memory(bias_md);
      std::copy(weights.bias.begin(), weights.bias.end(), static_cast<float*>(bias_.memory.get_data_handle()));
      backend_.stream().wait();

      if (fwd_pd.src_desc() != src_md || fwd_pd.dst_desc() != dst_md || bwd_pd.diff_dst_desc() != dst_md ||
          bwd_pd.diff_src_desc() != src_md)
        fail("oneDNN chose other activation layouts than planned for ", spec.name);
      forward_ = dnnl::convolution_forward(fwd_pd);
      backward_ = dnnl::convolution_backward_data(bwd_pd);
      relu_backward_ = dnnl::eltwise_backward(relu_bwd_pd);
      return 0;
    });
  }

  Shape output_shape() const override { return output_; }
  double forward_macs() const override { return macs_; }

  void forward(const Tensor& input, Tensor& output) override {
    const Tensor* source = &input;
    if (input_layout_ == Layout::planar) {
      backend_.convert(input, staged_input_);
      source = &staged_input_;
    }
    TESSERA_CHECK_THROWING(Dnnl, "convolution forward", [&] {
      memory src = backend_.wrap(*source), dst = backend_.wrap(output);
      forward_.execute(backend_.stream(), {{DNNL_ARG_SRC, src},
                                           {DNNL_ARG_WEIGHTS, forward_weights_->memory},
                                           {DNNL_ARG_BIAS, bias_.memory},
                                           {DNNL_ARG_DST, dst}});
      backend_.stream().wait();
      return 0;
    });
  }

  void backward(const Tensor& output, Tensor& grad_output, Tensor& grad_input) override {
    TESSERA_CHECK_THROWING(Dnnl, "convolution backward", [&] {
      if (!backward_weights_) backward_weights_ = backend_.derived_weights(forward_weights_, backward_weights_desc_);
      Tensor& destination = input_layout_ == Layout::planar ? staged_gradient_ : grad_input;
      memory dst = backend_.wrap(output), diff = backend_.wrap(grad_output), diff_src = backend_.wrap(destination);
      relu_backward_.execute(backend_.stream(),
                             {{DNNL_ARG_DST, dst}, {DNNL_ARG_DIFF_DST, diff}, {DNNL_ARG_DIFF_SRC, diff}});
      backward_.execute(backend_.stream(), {{DNNL_ARG_DIFF_DST, diff},
                                            {DNNL_ARG_WEIGHTS, backward_weights_->memory},
                                            {DNNL_ARG_DIFF_SRC, diff_src}});
      backend_.stream().wait();
      return 0;
    });
    if (input_layout_ == Layout::planar) backend_.convert(staged_gradient_, grad_input);
  }

 private:
  CpuBackend& backend_;
  Shape input_;
  Layout input_layout_;
  Tensor staged_input_, staged_gradient_;  // NHWC copies for a planar input
  Shape output_;
  double macs_ = 0.0;
  std::shared_ptr<const CpuBackend::OwnedMemory> forward_weights_;
  memory::desc backward_weights_desc_;
  std::shared_ptr<const CpuBackend::OwnedMemory> backward_weights_;
  CpuBackend::OwnedMemory bias_;
  dnnl::convolution_forward forward_;
  dnnl::convolution_backward_data backward_;
  dnnl::eltwise_backward relu_backward_;
};

class CpuPooling final : public PoolingLayer {
 public:
  CpuPooling(CpuBackend& backend, const LayerSpec& spec, Pooling pooling, Shape input)
      : backend_(backend) {
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
    // Extra right/bottom padding makes oneDNN produce the rounded-up size; max
    // pooling never picks padding, average pooling excludes it from the divisor.
    memory::dims pad_l = {p, p};
    // (Floor rounding that drops a last row needs no negative padding: oneDNN
    // rounds down too, and its backward then leaves that row's gradient zero.)
    memory::dims pad_r = {std::max(0, (output_.height - 1) * s + k - input.height - p),
                          std::max(0, (output_.width - 1) * s + k - input.width - p)};
    algorithm alg = pooling == Pooling::max ? algorithm::pooling_max : algorithm::pooling_avg_exclude_padding;
    TESSERA_CHECK_THROWING(Dnnl, ("planning pooling " + spec.name).c_str(), [&] {
      const auto& engine = backend_.engine();
      auto src_md = CpuBackend::describe_memory(input, Layout::features, backend_.feature_type());
      auto dst_md = CpuBackend::describe_memory(output_, Layout::features, backend_.feature_type());
      dnnl::pooling_forward::desc fwd_desc(prop_kind::forward_training, alg, src_md, dst_md, {s, s}, {k, k},
                                           pad_l, pad_r);
      dnnl::pooling_forward::primitive_desc fwd_pd(fwd_desc, engine);
      dnnl::pooling_backward::desc bwd_desc(alg, src_md, dst_md, {s, s}, {k, k}, pad_l, pad_r);
      dnnl::pooling_backward::primitive_desc bwd_pd(bwd_desc, engine, fwd_pd);
      if (pooling == Pooling::max) workspace_ = backend_.allocate_memory(fwd_pd.workspace_desc());
      forward_ = dnnl::pooling_forward(fwd_pd);
      backward_ = dnnl::pooling_backward(bwd_pd);
      return 0;
    });
  }

  Shape output_shape() const override { return output_; }

  void forward(const Tensor& input, Tensor& output) override {
    TESSERA_CHECK_THROWING(Dnnl, "pooling forward", [&] {
      std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, backend_.wrap(input)},
                                              {DNNL_ARG_DST, backend_.wrap(output)}};
      if (workspace_.storage) args[DNNL_ARG_WORKSPACE] = workspace_.memory;
      forward_.execute(backend_.stream(), args);
      backend_.stream().wait();
      return 0;
    });
  }

  void backward(const Tensor& grad_output, Tensor& grad_input) override {
    TESSERA_CHECK_THROWING(Dnnl, "pooling backward", [&] {
      std::unordered_map<int, memory> args = {{DNNL_ARG_DIFF_DST, backend_.wrap(grad_output)},
                                              {DNNL_ARG_DIFF_SRC, backend_.wrap(grad_input)}};
      if (workspace_.storage) args[DNNL_ARG_WORKSPACE] = workspace_.memory;
      backward_.execute(backend_.stream(), args);
      backend_.stream().wait();
      return 0;
    });
  }

 private:
  CpuBackend& backend_;
  Shape output_;
  CpuBackend::OwnedMemory workspace_;
  dnnl::pooling_forward forward_;
  dnnl::pooling_backward backward_;
};

// Features are NHWC, so a window's rows are runs of (width x C) floats and a
// full-width window is one (positions x C) matrix: G = F^T F is one matmul.
// A window narrower than the map takes one matmul per row, accumulating.
class CpuGram final : public GramOperator {
 public:
  CpuGram(CpuBackend& backend, Shape features)
      : GramOperator(features, backend.feature_type()), backend_(backend) {
    if (type() == DataType::bf16) {
      // The adjoint multiplies bf16 features by D; oneDNN's matmul takes
      // both operands in one type, so D (f32, C x C) is rounded into this.
      const memory::dim c = shape().channels;
      d_bf16_ = backend_.allocate_memory(memory::desc({c, c}, memory::data_type::bf16, memory::dims{c, 1}));
    }
  }


 private:
  void do_forward(const Tensor& features, const Box& window, float scale, Tensor& gram) override {
    const int c = shape().channels;
    bool full_rows = window.x0 == 0 && window.width() == shape().width;
    int runs = full_rows ? 1 : window.height();
    int positions = full_rows ? int(window.area()) : window.width();
    auto& plan = gram_plan(positions);
    float* g = gram.data();
    TESSERA_CHECK_THROWING(Dnnl, "Gram matmul", [&] {
      for (int r = 0; r < runs; ++r) {
        const void* f = element(features, (std::size_t(window.y0 + r) * shape().width + window.x0) * c);
        auto& primitive = r == 0 ? plan.first : plan.accumulate;
        execute(primitive, plan, f, f, g, scale);
      }
      return 0;
    });
  }

  void do_forward_contiguous(const Tensor& features, const Box& window, float scale, Tensor& gram) override {
    const int c = shape().channels;
    const std::size_t element = bytes_per_element(type());
    const std::size_t positions = window.area();
    if (block_capacity_ < positions) {
      // Grows to the largest block once (the first evaluation), then stays.
      block_ = backend_.allocate_memory(
          memory::desc({memory::dim(positions), c}, CpuBackend::dnnl_type(type()), memory::dims{c, 1}));
      block_capacity_ = positions;
    }
    char* to = reinterpret_cast<char*>(block_.storage.get());
    const std::size_t run = std::size_t(window.width()) * c * element;
    for (int r = 0; r < window.height(); ++r)
      std::memcpy(to + r * run, element_of(features, (std::size_t(window.y0 + r) * shape().width + window.x0) * c), run);
    auto& plan = gram_plan(int(positions));
    TESSERA_CHECK_THROWING(Dnnl, "Gram matmul", [&] {
      execute(plan.first, plan, to, to, gram.data(), scale);
      return 0;
    });
  }

  void do_backward(const Tensor& features, const Box& window, const Tensor& d, float scale,
                   Tensor& grad_features) override {
    bool full_rows = window.x0 == 0 && window.width() == shape().width;
    int runs = full_rows ? 1 : window.height();
    int positions = full_rows ? int(window.area()) : window.width();
    auto& plan = adjoint_plan(positions);
    const int c = shape().channels;
    const void* d_operand = d.data();
    if (type() == DataType::bf16) {
      TESSERA_CHECK_THROWING(Dnnl, "Gram adjoint rounding", [&] {
        memory from(memory::desc({c, c}, memory::data_type::f32, memory::dims{c, 1}), backend_.engine(),
                    const_cast<float*>(d.data()));
        dnnl::reorder(from, d_bf16_.memory).execute(backend_.stream(), from, d_bf16_.memory);
        backend_.stream().wait();
        return 0;
      });
      d_operand = d_bf16_.storage.get();
    }
    TESSERA_CHECK_THROWING(Dnnl, "Gram adjoint matmul", [&] {
      for (int r = 0; r < runs; ++r) {
        std::size_t offset = (std::size_t(window.y0 + r) * shape().width + window.x0) * c;
        execute(plan.accumulate, plan, element(features, offset), d_operand, element(grad_features, offset), scale);
      }
      return 0;
    });
  }

  struct Plan {
    memory::desc src, weights, dst;
    dnnl::matmul first, accumulate;  // dst = s*AB, dst += s*AB
  };

  static void* element_of(const Tensor& t, std::size_t index) { return element(t, index); }
  static void* element(const Tensor& t, std::size_t index) {
    return const_cast<char*>(reinterpret_cast<const char*>(t.data())) + index * bytes_per_element(t.type());
  }

  void execute(dnnl::matmul& primitive, Plan& plan, const void* a, const void* b, void* out, float scale) {
    const auto& engine = backend_.engine();
    memory src(plan.src, engine, const_cast<void*>(a));
    memory weights(plan.weights, engine, const_cast<void*>(b));
    memory dst(plan.dst, engine, out);
    memory scales({{1}, memory::data_type::f32, tag::x}, engine, &scale);
    primitive.execute(backend_.stream(), {{DNNL_ARG_SRC, src},
                                          {DNNL_ARG_WEIGHTS, weights},
                                          {DNNL_ARG_DST, dst},
                                          {DNNL_ARG_ATTR_OUTPUT_SCALES, scales}});
    backend_.stream().wait();
  }

  static void make(Plan& plan, const dnnl::engine& engine) {
    dnnl::matmul::desc desc(plan.src, plan.weights, plan.dst);
    dnnl::primitive_attr attr;
    attr.set_output_scales(0, {DNNL_RUNTIME_F32_VAL});
    plan.first = dnnl::matmul(dnnl::matmul::primitive_desc(desc, attr, engine));
    dnnl::post_ops sum;
    sum.append_sum(1.0f);
    attr.set_post_ops(sum);
    plan.accumulate = dnnl::matmul(dnnl::matmul::primitive_desc(desc, attr, engine));
  }

  // G (C x C) = F^T F with F a (positions x C) block whose rows are C apart.
  Plan& gram_plan(int positions) {
    auto it = gram_plans_.find(positions);
    if (it != gram_plans_.end()) return it->second;
    const memory::dim c = shape().channels, k = positions;
    Plan plan;
    TESSERA_CHECK_THROWING(Dnnl, "planning Gram matmul", [&] {
      const auto operand_type = CpuBackend::dnnl_type(type());  // products of bf16 accumulate in f32
      plan.src = memory::desc({c, k}, operand_type, memory::dims{1, c});  // F^T
      plan.weights = memory::desc({k, c}, operand_type, memory::dims{c, 1});
      plan.dst = memory::desc({c, c}, memory::data_type::f32, memory::dims{c, 1});
      make(plan, backend_.engine());
      return 0;
    });
    return gram_plans_.emplace(positions, std::move(plan)).first->second;
  }

  // dF (positions x C) += s * F D.
  Plan& adjoint_plan(int positions) {
    auto it = adjoint_plans_.find(positions);
    if (it != adjoint_plans_.end()) return it->second;
    const memory::dim c = shape().channels, m = positions;
    Plan plan;
    TESSERA_CHECK_THROWING(Dnnl, "planning Gram adjoint matmul", [&] {
      const auto operand_type = CpuBackend::dnnl_type(type());
      plan.src = memory::desc({m, c}, operand_type, memory::dims{c, 1});
      plan.weights = memory::desc({c, c}, operand_type, memory::dims{c, 1});
      plan.dst = memory::desc({m, c}, operand_type, memory::dims{c, 1});
      make(plan, backend_.engine());
      return 0;
    });
    return adjoint_plans_.emplace(positions, std::move(plan)).first->second;
  }

  CpuBackend& backend_;
  CpuBackend::OwnedMemory d_bf16_;
  CpuBackend::OwnedMemory block_;  // forward_contiguous's copy of a window
  std::size_t block_capacity_ = 0;
  std::map<int, Plan> gram_plans_;
  std::map<int, Plan> adjoint_plans_;
};

}  // namespace

std::unique_ptr<ConvolutionLayer> CpuBackend::do_plan_convolution(const LayerSpec& spec, const ConvWeights& weights,
                                                               Shape input, Layout input_layout) {
  return std::make_unique<CpuConvolution>(*this, spec, weights, input, input_layout);
}

std::unique_ptr<PoolingLayer> CpuBackend::do_plan_pooling(const LayerSpec& spec, Pooling pooling, Shape input) {
  return std::make_unique<CpuPooling>(*this, spec, pooling, input);
}

std::unique_ptr<GramOperator> CpuBackend::do_plan_gram(Shape features) {
  return std::make_unique<CpuGram>(*this, features);
}

}  // namespace tessera::cpu

namespace tessera::cpu {
std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }
}  // namespace tessera::cpu
