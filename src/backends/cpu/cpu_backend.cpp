#include "backends/cpu/cpu_backend.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

namespace tessera::cpu {

using dnnl::memory;
using tag = memory::format_tag;

namespace {

constexpr std::size_t kAlignmentBytes = 64;  // one cache line / one AVX-512 register

// Index of element (c, y, x) in a tensor of this shape and layout.
inline std::size_t offset_of(const Shape& s, Layout layout, int c, int y, int x) {
  if (layout == Layout::planar) return (std::size_t(c) * s.height + y) * s.width + x;
  return (std::size_t(y) * s.width + x) * s.channels + c;
}

void require_same_size(const Tensor& a, const Tensor& b, const char* what) {
  if (a.elements() != b.elements())
    fail("internal: ", what, " on tensors of ", a.elements(), " and ", b.elements(), " elements");
}

}  // namespace

CpuBackend::CpuBackend()
    : engine_(dnnl_checked("engine creation", [] { return dnnl::engine(dnnl::engine::kind::cpu, 0); })),
      stream_(dnnl_checked("stream creation", [this] { return dnnl::stream(engine_); })) {}

std::vector<std::string> CpuBackend::describe() const {
  const dnnl_version_t* v = dnnl_version();
  std::string isa;
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::avx512_core_amx: isa = "avx512_core_amx"; break;
    case dnnl::cpu_isa::avx512_core_bf16: isa = "avx512_core_bf16"; break;
    case dnnl::cpu_isa::avx512_core_vnni: isa = "avx512_core_vnni"; break;
    case dnnl::cpu_isa::avx512_core: isa = "avx512_core"; break;
    case dnnl::cpu_isa::avx2: isa = "avx2"; break;
    default: isa = "other"; break;
  }
  return {"cpu: " + std::to_string(omp_get_max_threads()) + " threads, oneDNN " +
          std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch) +
          " (" + isa + ")"};
}

void CpuBackend::set_threads(int threads) {
  if (threads > 0) omp_set_num_threads(threads);
}

std::shared_ptr<float> CpuBackend::allocate_bytes(std::size_t bytes) {
  std::size_t rounded = (std::max<std::size_t>(bytes, 1) + kAlignmentBytes - 1) / kAlignmentBytes * kAlignmentBytes;
  void* raw = std::aligned_alloc(kAlignmentBytes, rounded);
  if (!raw) fail("out of memory: could not allocate ", rounded / (1024.0 * 1024.0), " MiB on the CPU");
  std::size_t now = current_bytes_.fetch_add(rounded) + rounded;
  std::size_t peak = peak_bytes_.load();
  while (now > peak && !peak_bytes_.compare_exchange_weak(peak, now)) {
  }
  return std::shared_ptr<float>(static_cast<float*>(raw), [this, rounded](float* p) {
    std::free(p);
    current_bytes_.fetch_sub(rounded);
  });
}

Tensor CpuBackend::allocate(Shape shape, Layout layout) {
  std::size_t count = shape.elements();
  auto storage = allocate_bytes(count * sizeof(float));
  // Fresh buffers start at zero so that a forgotten initialisation shows up as
  // a wrong number, never as garbage.
  std::memset(storage.get(), 0, count * sizeof(float));
  return Tensor(shape, layout, std::move(storage), count);
}

CpuBackend::OwnedMemory CpuBackend::allocate_memory(const memory::desc& desc) {
  OwnedMemory owned;
  owned.storage = allocate_bytes(desc.get_size());
  owned.memory = dnnl_checked("memory creation", [&] { return memory(desc, engine_, owned.storage.get()); });
  return owned;
}

std::shared_ptr<const CpuBackend::OwnedMemory> CpuBackend::reordered_weights(const ConvWeights& weights,
                                                                             const memory::desc& desc) {
  // FNV-1a over the bytes: cheap next to planning, and it ties the cache
  // entry to the values rather than to an address.
  std::uint64_t fingerprint = 1469598103934665603ull;
  const auto* bytes = reinterpret_cast<const unsigned char*>(weights.weight.data());
  for (std::size_t i = 0, n = weights.weight.size() * sizeof(float); i < n; ++i)
    fingerprint = (fingerprint ^ bytes[i]) * 1099511628211ull;
  std::erase_if(weight_cache_, [](const CachedWeights& c) { return c.memory.expired(); });
  for (const auto& cached : weight_cache_)
    if (cached.fingerprint == fingerprint && cached.count == weights.weight.size() && cached.desc == desc)
      if (auto memory = cached.memory.lock()) return memory;

  auto owned = std::make_shared<OwnedMemory>(allocate_memory(desc));
  dnnl_checked("weight reorder", [&] {
    memory user({{weights.out_channels, weights.in_channels, weights.kernel_h, weights.kernel_w},
                 memory::data_type::f32, tag::oihw},
                engine_, const_cast<float*>(weights.weight.data()));
    dnnl::reorder(user, owned->memory).execute(stream_, user, owned->memory);
    stream_.wait();
    return 0;
  });
  weight_cache_.push_back({fingerprint, weights.weight.size(), desc, owned});
  return owned;
}

memory::desc CpuBackend::describe_memory(const Shape& shape, Layout layout) {
  return memory::desc({1, shape.channels, shape.height, shape.width}, memory::data_type::f32,
                      layout == Layout::planar ? tag::nchw : tag::nhwc);
}

memory CpuBackend::wrap(const Tensor& tensor) const {
  return memory(describe_memory(tensor.shape(), tensor.layout()), engine_,
                const_cast<float*>(tensor.data()));
}

void CpuBackend::upload(std::span<const float> host, Tensor& tensor) {
  if (host.size() != tensor.elements())
    fail("internal: upload of ", host.size(), " floats into a tensor of ", tensor.elements());
  if (tensor.layout() == Layout::planar) {
    std::memcpy(tensor.data(), host.data(), host.size() * sizeof(float));
    return;
  }
  Tensor planar(tensor.shape(), Layout::planar,
                std::shared_ptr<float>(const_cast<float*>(host.data()), [](float*) {}), host.size());
  convert(planar, tensor);
}

void CpuBackend::download(const Tensor& tensor, std::span<float> host) {
  if (host.size() != tensor.elements())
    fail("internal: download of ", tensor.elements(), " floats into ", host.size());
  if (tensor.layout() == Layout::planar) {
    std::memcpy(host.data(), tensor.data(), host.size() * sizeof(float));
    return;
  }
  Tensor planar(tensor.shape(), Layout::planar, std::shared_ptr<float>(host.data(), [](float*) {}),
                host.size());
  convert(tensor, planar);
}

void CpuBackend::convert(const Tensor& source, Tensor& destination) {
  if (!(source.shape() == destination.shape()))
    fail("internal: convert between shapes ", source.shape().describe(), " and ",
         destination.shape().describe());
  if (source.layout() == destination.layout()) {
    copy(source, destination);
    return;
  }
  dnnl_checked("reorder", [&] {
    memory from = wrap(source), to = wrap(destination);
    dnnl::reorder(from, to).execute(stream_, from, to);
    stream_.wait();
    return 0;
  });
}

double CpuBackend::squared_distance(const Tensor& a, const Tensor& b, const Window& window, float grad_scale,
                                    Tensor* grad_a) {
  require_same_size(a, b, "squared_distance");
  if (a.layout() != b.layout() || (grad_a && grad_a->layout() != a.layout()))
    fail("internal: squared_distance on tensors of different layouts");
  const Shape& s = a.shape();
  const float* pa = a.data();
  const float* pb = b.data();
  float* pg = grad_a ? grad_a->data() : nullptr;
  double total = 0.0;
  // Rows of the window are contiguous runs in both layouts (a run of x in
  // planar, a run of x*C in NHWC), so loop over (channel,) row, run.
  if (a.layout() == Layout::features) {
#pragma omp parallel for reduction(+ : total) schedule(static)
    for (int y = window.y; y < window.y + window.height; ++y) {
      std::size_t begin = offset_of(s, a.layout(), 0, y, window.x);
      std::size_t end = begin + std::size_t(window.width) * s.channels;
      double row = 0.0;
      for (std::size_t i = begin; i < end; ++i) {
        float d = pa[i] - pb[i];
        row += double(d) * d;
        if (pg) pg[i] += grad_scale * d;
      }
      total += row;
    }
  } else {
#pragma omp parallel for collapse(2) reduction(+ : total) schedule(static)
    for (int c = 0; c < s.channels; ++c)
      for (int y = window.y; y < window.y + window.height; ++y) {
        std::size_t begin = offset_of(s, a.layout(), c, y, window.x);
        double row = 0.0;
        for (std::size_t i = begin; i < begin + std::size_t(window.width); ++i) {
          float d = pa[i] - pb[i];
          row += double(d) * d;
          if (pg) pg[i] += grad_scale * d;
        }
        total += row;
      }
  }
  return total;
}

double CpuBackend::total_variation(const Tensor& image, float weight, Tensor& grad) {
  if (image.layout() != Layout::planar || grad.layout() != Layout::planar)
    fail("internal: total_variation needs planar tensors");
  require_same_size(image, grad, "total_variation");
  const Shape& s = image.shape();
  const int h = s.height, w = s.width;
  const float* x = image.data();
  float* g = grad.data();
  double total = 0.0;
  // Gather form: each pixel collects the terms of the grid cells it belongs
  // to (as the left/top pixel of its own cell, the right pixel of the cell to
  // its left, the bottom pixel of the cell above), so threads never write the
  // same element.
#pragma omp parallel for collapse(2) reduction(+ : total) schedule(static)
  for (int c = 0; c < s.channels; ++c)
    for (int i = 0; i < h; ++i) {
      const float* row = x + (std::size_t(c) * h + i) * w;
      float* grow = g + (std::size_t(c) * h + i) * w;
      double sum = 0.0;
      for (int j = 0; j < w; ++j) {
        float v = row[j];
        float gv = 0.0f;
        if (i < h - 1 && j < w - 1) {
          float dx = v - row[j + 1];
          float dy = v - row[j + w];
          sum += double(dx) * dx + double(dy) * dy;
          gv += dx + dy;
        }
        if (i < h - 1 && j > 0) gv -= row[j - 1] - v;
        if (i > 0 && j < w - 1) gv -= row[j - w] - v;
        grow[j] += weight * gv;
      }
      total += sum;
    }
  return 0.5 * weight * total;
}

double CpuBackend::dot(const Tensor& a, const Tensor& b) {
  require_same_size(a, b, "dot");
  const float* pa = a.data();
  const float* pb = b.data();
  const std::size_t n = a.elements();
  double total = 0.0;
#pragma omp parallel for reduction(+ : total) schedule(static)
  for (std::size_t i = 0; i < n; ++i) total += double(pa[i]) * pb[i];
  return total;
}

double CpuBackend::sum_abs(const Tensor& a) {
  const float* pa = a.data();
  const std::size_t n = a.elements();
  double total = 0.0;
#pragma omp parallel for reduction(+ : total) schedule(static)
  for (std::size_t i = 0; i < n; ++i) total += std::abs(pa[i]);
  return total;
}

double CpuBackend::max_abs(const Tensor& a) {
  const float* pa = a.data();
  const std::size_t n = a.elements();
  float largest = 0.0f;
#pragma omp parallel for reduction(max : largest) schedule(static)
  for (std::size_t i = 0; i < n; ++i) largest = std::max(largest, std::abs(pa[i]));
  return largest;
}

void CpuBackend::fill(Tensor& a, float value) {
  float* pa = a.data();
  const std::size_t n = a.elements();
#pragma omp parallel for schedule(static)
  for (std::size_t i = 0; i < n; ++i) pa[i] = value;
}

void CpuBackend::copy(const Tensor& source, Tensor& destination) {
  require_same_size(source, destination, "copy");
  if (source.data() != destination.data())
    std::memcpy(destination.data(), source.data(), source.elements() * sizeof(float));
}

void CpuBackend::scale(Tensor& a, float factor) {
  float* pa = a.data();
  const std::size_t n = a.elements();
#pragma omp parallel for schedule(static)
  for (std::size_t i = 0; i < n; ++i) pa[i] *= factor;
}

void CpuBackend::axpy(float alpha, const Tensor& x, Tensor& y) {
  require_same_size(x, y, "axpy");
  const float* px = x.data();
  float* py = y.data();
  const std::size_t n = x.elements();
#pragma omp parallel for schedule(static)
  for (std::size_t i = 0; i < n; ++i) py[i] += alpha * px[i];
}

void CpuBackend::subtract(const Tensor& a, const Tensor& b, Tensor& d) {
  require_same_size(a, b, "subtract");
  require_same_size(a, d, "subtract");
  const float* pa = a.data();
  const float* pb = b.data();
  float* pd = d.data();
  const std::size_t n = a.elements();
#pragma omp parallel for schedule(static)
  for (std::size_t i = 0; i < n; ++i) pd[i] = pa[i] - pb[i];
}

void CpuBackend::adam_update(Tensor& x, const Tensor& g, Tensor& m, Tensor& v, const AdamState& state) {
  require_same_size(x, g, "adam_update");
  require_same_size(x, m, "adam_update");
  require_same_size(x, v, "adam_update");
  // torch/optim's adam.lua, which neural-style uses: bias corrections folded
  // into the step size, epsilon added to sqrt(v) before the correction.
  const double t = double(state.step + 1);
  const double correction1 = 1.0 - std::pow(double(state.beta1), t);
  const double correction2 = 1.0 - std::pow(double(state.beta2), t);
  const float step = float(state.learning_rate * std::sqrt(correction2) / correction1);
  const float b1 = state.beta1, b2 = state.beta2, eps = state.epsilon;
  float* px = x.data();
  const float* pg = g.data();
  float* pm = m.data();
  float* pv = v.data();
  const std::size_t n = x.elements();
#pragma omp parallel for schedule(static)
  for (std::size_t i = 0; i < n; ++i) {
    pm[i] = b1 * pm[i] + (1.0f - b1) * pg[i];
    pv[i] = b2 * pv[i] + (1.0f - b2) * pg[i] * pg[i];
    px[i] -= step * pm[i] / (std::sqrt(pv[i]) + eps);
  }
}

}  // namespace tessera::cpu
