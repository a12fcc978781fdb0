#include "backends/cpu/cpu_backend.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

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

// The sum of per_element(i) over a window's elements, each row in double
// then the rows: the rows of a window are contiguous runs in both layouts
// (a run of x in planar, a run of x*C in NHWC), one per (channel,) row.
template <typename PerElement>
double sum_over_window(const Shape& s, Layout layout, const Box& window, PerElement per_element) {
  const bool planar = layout == Layout::planar;
  const int channel_runs = planar ? s.channels : 1;
  const std::size_t run_length = planar ? std::size_t(window.width()) : std::size_t(window.width()) * s.channels;
  double total = 0.0;
#pragma omp parallel for collapse(2) reduction(+ : total) schedule(static)
  for (int c = 0; c < channel_runs; ++c)
    for (int y = window.y0; y < window.y0 + window.height(); ++y) {
      std::size_t begin = offset_of(s, layout, c, y, window.x0);
      double row = 0.0;
      for (std::size_t i = begin; i < begin + run_length; ++i) row += per_element(i);
      total += row;
    }
  return total;
}

// bf16 is the upper half of an f32: widening is a shift; narrowing rounds to
// nearest even (NaN stays NaN).
inline float bf16_to_float(std::uint16_t bits) {
  std::uint32_t wide = std::uint32_t(bits) << 16;
  float value;
  std::memcpy(&value, &wide, 4);
  return value;
}
inline std::uint16_t float_to_bf16(float value) {
  std::uint32_t bits;
  std::memcpy(&bits, &value, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return std::uint16_t((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return std::uint16_t(bits >> 16);
}

// Element access for either storage type, for the few loops of our own that
// read or write activations.
struct ElementView {
  float* f32 = nullptr;
  std::uint16_t* bf16 = nullptr;
  explicit ElementView(const Tensor& t) {
    if (t.type() == DataType::bf16)
      bf16 = reinterpret_cast<std::uint16_t*>(const_cast<float*>(t.data()));
    else
      f32 = const_cast<float*>(t.data());
  }
  float get(std::size_t i) const { return f32 ? f32[i] : bf16_to_float(bf16[i]); }
  void set(std::size_t i, float v) const {
    if (f32)
      f32[i] = v;
    else
      bf16[i] = float_to_bf16(v);
  }
};

}  // namespace

CpuBackend::CpuBackend()
    : engine_(TESSERA_CHECK_THROWING(Dnnl, "engine creation", [] { return dnnl::engine(dnnl::engine::kind::cpu, 0); })),
      stream_(TESSERA_CHECK_THROWING(Dnnl, "stream creation", [this] { return dnnl::stream(engine_); })) {}

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
  count_allocated(rounded);
  return std::shared_ptr<float>(static_cast<float*>(raw), [this, rounded](float* p) {
    std::free(p);
    count_freed(rounded);
  });
}

void CpuBackend::set_precision(Precision precision) {
  if (precision == Precision::bf16) {
    auto isa = dnnl::get_effective_cpu_isa();
    if (isa != dnnl::cpu_isa::avx512_core_bf16 && isa != dnnl::cpu_isa::avx512_core_amx)
      fail("bf16 needs a CPU with AVX-512 BF16 (or AMX); this one has neither");
  }
  precision_ = precision;
}

Tensor CpuBackend::do_allocate(Shape shape, Layout layout, Contents contents) {
  DataType type = layout == Layout::features ? feature_type() : DataType::f32;
  std::size_t count = shape.elements();
  std::size_t bytes = count * bytes_per_element(type);
  auto storage = allocate_bytes(bytes);
  // All bits set is a NaN in f32 and in bf16.
  if (contents == Contents::zeros) std::memset(storage.get(), 0, bytes);
  else if (poison_unset_buffers()) std::memset(storage.get(), 0xff, bytes);
  return Tensor(shape, layout, std::move(storage), count, type);
}

memory::data_type CpuBackend::dnnl_type(DataType type) {
  return type == DataType::bf16 ? memory::data_type::bf16 : memory::data_type::f32;
}

CpuBackend::OwnedMemory CpuBackend::allocate_memory(const memory::desc& desc) {
  OwnedMemory owned;
  owned.storage = allocate_bytes(desc.get_size());
  owned.memory = TESSERA_CHECK_THROWING(Dnnl, "memory creation", [&] { return memory(desc, engine_, owned.storage.get()); });
  return owned;
}

std::shared_ptr<const CpuBackend::OwnedMemory> CpuBackend::reordered_weights(const ConvWeights& weights,
                                                                             const memory::desc& desc) {
  const std::uint64_t fingerprint = Backend::fingerprint(weights.weight);
  std::erase_if(weight_cache_, [](const CachedWeights& c) { return c.memory.expired(); });
  for (const auto& cached : weight_cache_)
    if (cached.fingerprint == fingerprint && cached.count == weights.weight.size() && cached.desc == desc)
      if (auto memory = cached.memory.lock()) return memory;

  auto owned = std::make_shared<OwnedMemory>(allocate_memory(desc));
  TESSERA_CHECK_THROWING(Dnnl, "weight reorder", [&] {
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

std::shared_ptr<const CpuBackend::OwnedMemory> CpuBackend::derived_weights(
    const std::shared_ptr<const OwnedMemory>& from, const memory::desc& desc) {
  std::erase_if(derived_cache_, [](const DerivedWeights& d) { return d.memory.expired() || d.from.expired(); });
  for (const auto& cached : derived_cache_)
    if (cached.from_address == from.get() && cached.desc == desc)
      if (auto memory = cached.memory.lock()) return memory;
  auto owned = std::make_shared<OwnedMemory>(allocate_memory(desc));
  TESSERA_CHECK_THROWING(Dnnl, "weight reorder", [&] {
    dnnl::memory source = from->memory;  // a handle; the reorder only reads it
    dnnl::reorder(source, owned->memory).execute(stream_, source, owned->memory);
    stream_.wait();
    return 0;
  });
  derived_cache_.push_back({from, from.get(), desc, owned});
  return owned;
}

memory::desc CpuBackend::describe_memory(const Shape& shape, Layout layout, DataType type) {
  return memory::desc({1, shape.channels, shape.height, shape.width}, dnnl_type(type),
                      layout == Layout::planar ? tag::nchw : tag::nhwc);
}

memory CpuBackend::wrap(const Tensor& tensor) const {
  return memory(describe_memory(tensor.shape(), tensor.layout(), tensor.type()), engine_,
                const_cast<float*>(tensor.data()));
}

void CpuBackend::do_upload(std::span<const float> host, Tensor& tensor) {
  if (tensor.layout() == Layout::planar && tensor.type() == DataType::f32) {
    std::memcpy(tensor.data(), host.data(), host.size() * sizeof(float));
    return;
  }
  Tensor planar(tensor.shape(), Layout::planar,
                std::shared_ptr<float>(const_cast<float*>(host.data()), [](float*) {}), host.size());
  convert(planar, tensor);
}

void CpuBackend::do_download(const Tensor& tensor, std::span<float> host) {
  if (tensor.layout() == Layout::planar && tensor.type() == DataType::f32) {
    std::memcpy(host.data(), tensor.data(), host.size() * sizeof(float));
    return;
  }
  Tensor planar(tensor.shape(), Layout::planar, std::shared_ptr<float>(host.data(), [](float*) {}),
                host.size());
  convert(tensor, planar);
}

void CpuBackend::do_convert(const Tensor& source, Tensor& destination) {
  TESSERA_CHECK_THROWING(Dnnl, "reorder", [&] {
    memory from = wrap(source), to = wrap(destination);
    dnnl::reorder(from, to).execute(stream_, from, to);
    stream_.wait();
    return 0;
  });
}

double CpuBackend::do_squared_distance(const Tensor& a, const Tensor& b, const Box& window, float grad_scale,
                                    Tensor* grad_a) {
  const ElementView pa(a), pb(b);
  const ElementView pg = grad_a ? ElementView(*grad_a) : ElementView(Tensor());
  const bool with_gradient = grad_a != nullptr;
  return sum_over_window(a.shape(), a.layout(), window, [&](std::size_t i) {
    float d = pa.get(i) - pb.get(i);
    if (with_gradient) pg.set(i, pg.get(i) + grad_scale * d);
    return double(d) * d;
  });
}

double CpuBackend::do_window_sum_abs(const Tensor& a, const Box& window) {
  const Shape& s = a.shape();
  const ElementView pa(a);
  return sum_over_window(s, a.layout(), window, [&](std::size_t i) { return double(std::abs(pa.get(i))); });
}

void CpuBackend::do_copy_window(const Tensor& source, const Box& window, Tensor& destination, int x, int y) {
  const Shape& s = source.shape();
  const Shape& d = destination.shape();
  const float* from = source.data();
  float* to = destination.data();
#pragma omp parallel for collapse(2) schedule(static)
  for (int c = 0; c < s.channels; ++c)
    for (int row = 0; row < window.height(); ++row)
      std::memcpy(to + (std::size_t(c) * d.height + y + row) * d.width + x,
                  from + (std::size_t(c) * s.height + window.y0 + row) * s.width + window.x0,
                  std::size_t(window.width()) * sizeof(float));
}

double CpuBackend::do_total_variation(const Tensor& image, float weight, Tensor& grad, const Box& counted) {
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
          if (i >= counted.y0 && i < counted.y0 + counted.height() && j >= counted.x0 && j < counted.x0 + counted.width())
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

double CpuBackend::do_dot(const Tensor& a, const Tensor& b) {
  const float* pa = a.data();
  const float* pb = b.data();
  const std::size_t n = a.elements();
  double total = 0.0;
#pragma omp parallel for reduction(+ : total) schedule(static)
  for (std::size_t i = 0; i < n; ++i) total += double(pa[i]) * pb[i];
  return total;
}

double CpuBackend::do_sum_abs(const Tensor& a) {
  const float* pa = a.data();
  const std::size_t n = a.elements();
  double total = 0.0;
#pragma omp parallel for reduction(+ : total) schedule(static)
  for (std::size_t i = 0; i < n; ++i) total += std::abs(pa[i]);
  return total;
}

void CpuBackend::do_fill(Tensor& a, float value) {
  const ElementView pa(a);
  const std::size_t n = a.elements();
#pragma omp parallel for schedule(static)
  for (std::size_t i = 0; i < n; ++i) pa.set(i, value);
}

void CpuBackend::do_copy(const Tensor& source, Tensor& destination) {
  std::memcpy(destination.data(), source.data(), source.elements() * bytes_per_element(source.type()));
}

void CpuBackend::do_scale(Tensor& a, float factor) {
  float* pa = a.data();
  const std::size_t n = a.elements();
#pragma omp parallel for schedule(static)
  for (std::size_t i = 0; i < n; ++i) pa[i] *= factor;
}

void CpuBackend::do_axpy(float alpha, const Tensor& x, Tensor& y) {
  const std::size_t n = x.elements();
  if (x.type() == DataType::f32 && y.type() == DataType::f32) {
    const float* px = x.data();
    float* py = y.data();
#pragma omp parallel for schedule(static)
    for (std::size_t i = 0; i < n; ++i) py[i] += alpha * px[i];
    return;
  }
  const ElementView px(x), py(y);
#pragma omp parallel for schedule(static)
  for (std::size_t i = 0; i < n; ++i) py.set(i, py.get(i) + alpha * px.get(i));
}

namespace {

// Blocks of this many elements stay in L1/L2 while every row meets them.
constexpr std::size_t kProductBlock = 2048;
// Independent partial sums per product: without them each sum is one chain
// of dependent additions (the order of floating-point sums is fixed, so the
// compiler may not split it); with them the loop vectorises, and the order
// is still fixed: lane l sums elements l, l + 8, ...
constexpr std::size_t kLanes = 8;
constexpr int kRowsPerPass = 4;

// Thread `t` of `count` takes one contiguous part of n elements (as a static
// schedule would), so the partial sums depend on n and count alone.
std::pair<std::size_t, std::size_t> part_of(std::size_t n, int t, int count) {
  const std::size_t per = n / std::size_t(count), extra = n % std::size_t(count);
  const std::size_t begin = std::size_t(t) * per + std::min<std::size_t>(std::size_t(t), extra);
  return {begin, begin + per + (std::size_t(t) < extra ? 1 : 0)};
}

// R rows' products with one column over `length` elements, added to
// sums[0..R): the rows come widened to double already (once per block, not
// once per column), the column is widened once for all rows.
template <int R>
[[gnu::always_inline]] inline void rows_dot_column(const double* const* rows, const float* column,
                                                   std::size_t length, double* sums) {
  double lanes[R][kLanes] = {};
  const std::size_t whole = length - length % kLanes;
  for (std::size_t i = 0; i < whole; i += kLanes) {
    double c[kLanes];
    for (std::size_t l = 0; l < kLanes; ++l) c[l] = double(column[i + l]);
    for (int r = 0; r < R; ++r)
      for (std::size_t l = 0; l < kLanes; ++l) lanes[r][l] += rows[r][i + l] * c[l];
  }
  for (int r = 0; r < R; ++r) {
    double block = 0.0;
    for (std::size_t l = 0; l < kLanes; ++l) block += lanes[r][l];
    for (std::size_t i = whole; i < length; ++i) block += rows[r][i] * double(column[i]);
    sums[r] += block;
  }
}

// Compiled for AVX2 as well where the CPU has it (without FMA, so that the
// sums are the same on every CPU: the lanes fix the order, not the width).
[[gnu::target_clones("avx2", "default")]] void row_group_dot_column(const double* const* rows, int count,
                                                                    const float* column, std::size_t length,
                                                                    double* sums) {
  switch (count) {
    case 1: rows_dot_column<1>(rows, column, length, sums); break;
    case 2: rows_dot_column<2>(rows, column, length, sums); break;
    case 3: rows_dot_column<3>(rows, column, length, sums); break;
    default: rows_dot_column<4>(rows, column, length, sums); break;
  }
}

// sum[i] += a_k terms_k[i] for up to four terms, in order, one pass over sum.
[[gnu::target_clones("avx2", "default")]] void add_terms(double* sum, const float* const* terms,
                                                         const double* coefficients, int count,
                                                         std::size_t length) {
  switch (count) {
    case 1:
      for (std::size_t i = 0; i < length; ++i) sum[i] += coefficients[0] * double(terms[0][i]);
      break;
    case 2:
      for (std::size_t i = 0; i < length; ++i)
        sum[i] = (sum[i] + coefficients[0] * double(terms[0][i])) + coefficients[1] * double(terms[1][i]);
      break;
    case 3:
      for (std::size_t i = 0; i < length; ++i)
        sum[i] = ((sum[i] + coefficients[0] * double(terms[0][i])) + coefficients[1] * double(terms[1][i])) +
                 coefficients[2] * double(terms[2][i]);
      break;
    default:
      for (std::size_t i = 0; i < length; ++i)
        sum[i] = (((sum[i] + coefficients[0] * double(terms[0][i])) + coefficients[1] * double(terms[1][i])) +
                  coefficients[2] * double(terms[2][i])) +
                 coefficients[3] * double(terms[3][i]);
      break;
  }
}

}  // namespace

void CpuBackend::do_dot_products(std::span<const Tensor* const> rows, std::span<const Tensor* const> columns,
                                 std::span<double> products) {
  const std::size_t n = rows.front()->elements(), R = rows.size(), C = columns.size();
  const int threads = omp_get_max_threads();
  // Each thread's sums, added in thread order at the end: an OpenMP reduction
  // would add them in whatever order the threads finish.
  std::vector<double> partial(std::size_t(threads) * R * C, 0.0);
  int used = 1;
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num(), count = omp_get_num_threads();
#pragma omp single
    used = count;
    const auto [begin, end] = part_of(n, t, count);
    double* sums = partial.data() + std::size_t(t) * R * C;
    std::vector<double> group_sums(kRowsPerPass), widened(kRowsPerPass * kProductBlock);
    const double* pointers[kRowsPerPass];
    for (std::size_t start = begin; start < end; start += kProductBlock) {
      const std::size_t length = std::min(kProductBlock, end - start);
      for (std::size_t r0 = 0; r0 < R; r0 += kRowsPerPass) {
        const int group = int(std::min<std::size_t>(kRowsPerPass, R - r0));
        for (int r = 0; r < group; ++r) {
          const float* pr = rows[r0 + std::size_t(r)]->data() + start;
          double* wide = widened.data() + std::size_t(r) * kProductBlock;
          for (std::size_t i = 0; i < length; ++i) wide[i] = double(pr[i]);
          pointers[r] = wide;
        }
        for (std::size_t c = 0; c < C; ++c) {
          std::fill(group_sums.begin(), group_sums.end(), 0.0);
          row_group_dot_column(pointers, group, columns[c]->data() + start, length, group_sums.data());
          for (int r = 0; r < group; ++r) sums[(r0 + std::size_t(r)) * C + c] += group_sums[std::size_t(r)];
        }
      }
    }
  }
  for (std::size_t k = 0; k < R * C; ++k) {
    double total = 0.0;
    for (int t = 0; t < used; ++t) total += partial[std::size_t(t) * R * C + k];
    products[k] = total;
  }
}

void CpuBackend::do_combine(std::span<const Tensor* const> terms, std::span<const double> coefficients, Tensor& out) {
  const std::size_t n = out.elements(), count = terms.size();
  const std::size_t blocks = (n + kProductBlock - 1) / kProductBlock;
  float* po = out.data();
#pragma omp parallel for schedule(static)
  for (std::size_t b = 0; b < blocks; ++b) {
    const std::size_t start = b * kProductBlock, length = std::min(kProductBlock, n - start);
    double sum[kProductBlock] = {};
    const float* pointers[4];
    // The terms in order, four at a time: each element's sum is
    // ((0 + a0 t0) + a1 t1) + ..., whatever the grouping.
    for (std::size_t k0 = 0; k0 < count; k0 += 4) {
      const int group = int(std::min<std::size_t>(4, count - k0));
      for (int k = 0; k < group; ++k) pointers[k] = terms[k0 + std::size_t(k)]->data() + start;
      add_terms(sum, pointers, coefficients.data() + k0, group, length);
    }
    // Written only after every term was read: `out` may be one of them.
    for (std::size_t i = 0; i < length; ++i) po[start + i] = float(sum[i]);
  }
}

void CpuBackend::do_subtract(const Tensor& a, const Tensor& b, Tensor& d) {
  const float* pa = a.data();
  const float* pb = b.data();
  float* pd = d.data();
  const std::size_t n = a.elements();
#pragma omp parallel for schedule(static)
  for (std::size_t i = 0; i < n; ++i) pd[i] = pa[i] - pb[i];
}

DoubleBuffer CpuBackend::do_allocate_doubles(std::size_t count) {
  auto storage = allocate_bytes(count * sizeof(double));
  std::memset(storage.get(), 0, count * sizeof(double));
  return DoubleBuffer(std::shared_ptr<double>(storage, reinterpret_cast<double*>(storage.get())), count);
}

void CpuBackend::do_clear(DoubleBuffer& sums) { std::memset(sums.data(), 0, sums.bytes()); }

void CpuBackend::do_accumulate_double(const Tensor& values, DoubleBuffer& sums, std::size_t offset) {
  const float* pv = values.data();
  double* ps = sums.data() + offset;
  const std::size_t n = values.elements();
#pragma omp parallel for schedule(static)
  for (std::size_t i = 0; i < n; ++i) ps[i] += pv[i];
}

void CpuBackend::do_assign_from_double(const DoubleBuffer& sums, std::size_t offset, Tensor& values) {
  float* pv = values.data();
  const double* ps = sums.data() + offset;
  const std::size_t n = values.elements();
#pragma omp parallel for schedule(static)
  for (std::size_t i = 0; i < n; ++i) pv[i] = float(ps[i]);
}

void CpuBackend::do_write_doubles(std::span<const double> values, DoubleBuffer& sums, std::size_t offset) {
  std::memcpy(sums.data() + offset, values.data(), values.size_bytes());
}

void CpuBackend::do_read_doubles(const DoubleBuffer& sums, std::size_t offset, std::span<double> values) {
  std::memcpy(values.data(), sums.data() + offset, values.size_bytes());
}

void CpuBackend::do_adam_update(Tensor& x, const Tensor& g, Tensor& m, Tensor& v, const AdamState& state) {
  const float step = state.step_size();  // adam.lua's, bias corrections folded in
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
