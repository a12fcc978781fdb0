#include "backends/cuda/cuda_backend.hpp"

#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <limits>
#include <sstream>
#include <vector>

#include "backends/cuda/cuda_kernels.cuh"
#include "backends/cuda_registration.hpp"

namespace tessera::cuda {

namespace {

double mebibytes(std::size_t bytes) { return double(bytes) / (1024.0 * 1024.0); }

// --- reductions: each block adds its grid-stride share, in a fixed order,
// into partials[blockIdx.x]; sum_partials adds those in one block.

template <typename T>
__device__ T block_sum(T value) {
  __shared__ T shared[kThreadsPerBlock];
  shared[threadIdx.x] = value;
  __syncthreads();
  for (int half = kThreadsPerBlock / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) shared[threadIdx.x] += shared[threadIdx.x + half];
    __syncthreads();
  }
  return shared[0];
}

template <typename Term>
__global__ void reduce_sum(Term term, std::size_t n, double* partials) {
  double sum = 0.0;
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n;
       i += std::size_t(gridDim.x) * blockDim.x)
    sum += term(i);
  double total = block_sum(sum);
  if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

__global__ void sum_partials(const double* partials, int count, double* result) {
  double sum = 0.0;
  for (int i = threadIdx.x; i < count; i += blockDim.x) sum += partials[i];
  double total = block_sum(sum);
  if (threadIdx.x == 0) *result = total;
}

struct DotTerm {
  const float* a;
  const float* b;
  __device__ double operator()(std::size_t i) const { return double(a[i]) * double(b[i]); }
};

struct AbsTerm {
  const float* a;
  __device__ double operator()(std::size_t i) const { return fabs(double(a[i])); }
};

// The window's rows are contiguous runs in both layouts (width floats per
// channel row in planar, width x C in NHWC): element i of the window is
// element i % run_length of run i / run_length.
// Element i of a window's elements, counted run by run: a run of x in
// planar, of x*C in NHWC, one per (channel,) row, `run_length` long.
__device__ std::size_t window_element(std::size_t i, std::size_t run_length, const Box& window, int channels,
                                      int height, int width, bool planar) {
  std::size_t run = i / run_length, k = i % run_length;
  int c = planar ? int(run / window.height()) : 0;
  int y = window.y0 + int(run % window.height());
  return offset_of(channels, height, width, planar, c, y, window.x0) + k;
}

struct SquaredDistanceTerm {
  Elements a, b, grad;
  bool with_gradient;
  float grad_scale;
  int channels, height, width;
  bool planar;
  Box window;
  std::size_t run_length;
  __device__ double operator()(std::size_t i) const {
    std::size_t index = window_element(i, run_length, window, channels, height, width, planar);
    float d = a.get(index) - b.get(index);
    if (with_gradient) grad.set(index, grad.get(index) + grad_scale * d);
    return double(d) * d;
  }
};

struct WindowAbsTerm {
  Elements a;
  int channels, height, width;
  bool planar;
  Box window;
  std::size_t run_length;
  __device__ double operator()(std::size_t i) const {
    return fabs(double(a.get(window_element(i, run_length, window, channels, height, width, planar))));
  }
};

// Gather form, as on the CPU: each pixel collects the terms of the cells it
// belongs to, so no two threads write one element.
struct TotalVariationTerm {
  const float* x;
  float* g;
  int height, width;
  float weight;
  Box counted;
  __device__ double operator()(std::size_t index) const {
    const int w = width, h = height;
    const int j = int(index % w);
    const int i = int((index / w) % h);
    const float* row = x + (index - j);
    const float v = row[j];
    float gv = 0.0f;
    double sum = 0.0;
    if (i < h - 1 && j < w - 1) {
      float dx = v - row[j + 1];
      float dy = v - row[j + w];
      if (i >= counted.y0 && i < counted.y0 + counted.height() && j >= counted.x0 && j < counted.x0 + counted.width())
        sum = double(dx) * dx + double(dy) * dy;
      gv += dx + dy;
    }
    if (i < h - 1 && j > 0) gv -= row[j - 1] - v;
    if (i > 0 && j < w - 1) gv -= row[j - w] - v;
    g[index] += weight * gv;
    return sum;
  }
};

// --- element-wise kernels (grid-stride)

#define TESSERA_GRID_STRIDE(i, n)                                                          \
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < (n); \
       i += std::size_t(gridDim.x) * blockDim.x)

__global__ void fill_kernel(Elements a, std::size_t n, float value) {
  TESSERA_GRID_STRIDE(i, n) a.set(i, value);
}

__global__ void scale_kernel(float* a, std::size_t n, float factor) {
  TESSERA_GRID_STRIDE(i, n) a[i] *= factor;
}

__global__ void axpy_kernel(float alpha, Elements x, Elements y, std::size_t n) {
  TESSERA_GRID_STRIDE(i, n) y.set(i, y.get(i) + alpha * x.get(i));
}

__global__ void subtract_kernel(const float* a, const float* b, float* d, std::size_t n) {
  TESSERA_GRID_STRIDE(i, n) d[i] = a[i] - b[i];
}

// Up to this many rows meet each column in one pass over it.
constexpr int kRowsPerPass = 4;
struct RowSet {
  const float* rows[kRowsPerPass];
  int count;
};

// Each block's partial sums of the rows' products with one column:
// partials[r * row_stride + block]. block_sum reuses its shared memory, so
// the block meets between rows.
__global__ void rows_dot_column(RowSet set, const float* column, std::size_t n, double* partials,
                                std::size_t row_stride) {
  double sums[kRowsPerPass] = {};
  TESSERA_GRID_STRIDE(i, n) {
    const double c = column[i];
#pragma unroll
    for (int r = 0; r < kRowsPerPass; ++r)
      if (r < set.count) sums[r] += double(set.rows[r][i]) * c;
  }
  for (int r = 0; r < set.count; ++r) {
    const double total = block_sum(sums[r]);
    if (threadIdx.x == 0) partials[r * row_stride + blockIdx.x] = total;
    __syncthreads();
  }
}

// Block g adds group g of `per_group` partial sums, in order.
__global__ void sum_partial_groups(const double* partials, int per_group, double* results) {
  const double* group = partials + std::size_t(blockIdx.x) * per_group;
  double sum = 0.0;
  for (int i = threadIdx.x; i < per_group; i += blockDim.x) sum += group[i];
  const double total = block_sum(sum);
  if (threadIdx.x == 0) results[blockIdx.x] = total;
}

__global__ void combine_kernel(const float* const* terms, const double* coefficients, int count, float* out,
                               std::size_t n) {
  TESSERA_GRID_STRIDE(i, n) {
    double sum = 0.0;
    for (int k = 0; k < count; ++k) sum += coefficients[k] * double(terms[k][i]);
    out[i] = float(sum);  // after every term's element i was read: out may be a term
  }
}

__global__ void accumulate_double_kernel(const float* values, double* sums, std::size_t n) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n; i += std::size_t(gridDim.x) * blockDim.x)
    sums[i] += double(values[i]);
}

__global__ void assign_from_double_kernel(const double* sums, float* values, std::size_t n) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n; i += std::size_t(gridDim.x) * blockDim.x)
    values[i] = float(sums[i]);
}

__global__ void adam_kernel(float* x, const float* g, float* m, float* v, std::size_t n, float step, float b1,
                            float b2, float eps) {
  TESSERA_GRID_STRIDE(i, n) {
    float mi = b1 * m[i] + (1.0f - b1) * g[i];
    float vi = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
    m[i] = mi;
    v[i] = vi;
    x[i] -= step * mi / (sqrtf(vi) + eps);
  }
}

// Destination-indexed, so writes are coalesced; covers planar <-> NHWC and
// f32 <-> bf16 in one pass.
__global__ void convert_kernel(Elements source, bool source_planar, Elements destination, bool destination_planar,
                               int channels, int height, int width) {
  const std::size_t n = std::size_t(channels) * height * width;
  TESSERA_GRID_STRIDE(i, n) {
    int c, y, x;
    if (destination_planar) {
      x = int(i % width);
      y = int((i / width) % height);
      c = int(i / (std::size_t(width) * height));
    } else {
      c = int(i % channels);
      x = int((i / channels) % width);
      y = int(i / (std::size_t(channels) * width));
    }
    destination.set(i, source.get(offset_of(channels, height, width, source_planar, c, y, x)));
  }
}

// Which GPU this process uses: one per rank, chosen from the node-local rank
// that mpirun or srun sets (0 in a plain process).
int local_rank() {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID", "MV2_COMM_WORLD_LOCAL_RANK"})
    if (const char* value = std::getenv(name)) return std::max(0, std::atoi(value));
  return 0;
}

}  // namespace

// --- registration

bool compiled() { return true; }

int usable_device_count(std::string& why_none) {
  int count = 0;
  cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    // cudaErrorInsufficientDriver (35) on a machine with the toolkit and no
    // driver (CI), cudaErrorNoDevice (100) with a driver and no GPU: both
    // mean "no GPU here", never a failure. The error is not sticky; clear it
    // so that a later call does not report it again.
    (void)cudaGetLastError();
    why_none = std::string("no usable CUDA GPU: cudaGetDeviceCount: ") + cudaGetErrorName(status) + " (" +
               cudaGetErrorString(status) + ")";
    return 0;
  }
  if (count == 0) why_none = "no CUDA GPU: the driver reports 0 devices";
  return count;
}

std::unique_ptr<Backend> make_cuda_backend() {
  std::string why_none;
  int count = usable_device_count(why_none);
  if (count == 0) fail("backend 'cuda' cannot run here: ", why_none);
  return std::make_unique<CudaBackend>(local_rank() % count);
}

// --- the backend

CudaBackend::CudaBackend(int device) : device_(device) {
  try {
    TESSERA_CUDA_CHECK(cudaSetDevice(device_));
    cudaDeviceProp properties{};
    TESSERA_CUDA_CHECK(cudaGetDeviceProperties(&properties, device_));
    multiprocessors_ = properties.multiProcessorCount;
    compute_major_ = properties.major;
    device_name_ = properties.name;
    TESSERA_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    TESSERA_CUDNN_CHECK(cudnnCreate(&cudnn_));
    TESSERA_CUDNN_CHECK(cudnnSetStream(cudnn_, stream_));
    TESSERA_CUBLAS_CHECK(cublasCreate(&cublas_));
    TESSERA_CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
    // f32 is the reference: no TF32 in the Gram products (cuBLAS would use
    // it with CUBLAS_TF32_TENSOR_OP_MATH); bf16 products use the tensor
    // cores through their compute type whatever this mode says.
    TESSERA_CUBLAS_CHECK(cublasSetMathMode(cublas_, CUBLAS_DEFAULT_MATH));
    partials_ = allocate_bytes((kMaxReductionBlocks + 1) * sizeof(double));
    TESSERA_CUDA_CHECK(cudaMallocHost(&result_host_, sizeof(double)));
  } catch (...) {
    release();  // a constructor that throws gets no destructor call
    throw;
  }
}

CudaBackend::~CudaBackend() { release(); }

void CudaBackend::release() {
  // Teardown cannot report failures (a destructor must not throw, and the
  // process may be ending because of an earlier CUDA error); each release
  // is attempted once and its status deliberately dropped.
  if (stream_) (void)cudaStreamSynchronize(stream_);
  weight_cache_.clear();
  workspace_.reset();
  partials_.reset();
  scratch_.reset();
  products_scratch_.reset();
  combine_scratch_.reset();
  if (result_host_) (void)cudaFreeHost(result_host_);
  result_host_ = nullptr;
  if (cublas_) (void)cublasDestroy(cublas_);
  if (cudnn_) (void)cudnnDestroy(cudnn_);
  if (stream_) (void)cudaStreamDestroy(stream_);
  cublas_ = nullptr;
  cudnn_ = nullptr;
  stream_ = nullptr;
}

std::vector<std::string> CudaBackend::describe() const {
  int driver = 0, runtime = 0;
  TESSERA_CUDA_CHECK(cudaDriverGetVersion(&driver));
  TESSERA_CUDA_CHECK(cudaRuntimeGetVersion(&runtime));
  int cublas_version = 0;
  TESSERA_CUBLAS_CHECK(cublasGetVersion(cublas_, &cublas_version));
  std::size_t cudnn_version = cudnnGetVersion();
  auto version = [](int v) { return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10); };
  std::vector<std::string> lines;
  int count = 0;
  TESSERA_CUDA_CHECK(cudaGetDeviceCount(&count));
  for (int d = 0; d < count; ++d) {
    cudaDeviceProp p{};
    TESSERA_CUDA_CHECK(cudaGetDeviceProperties(&p, d));
    std::ostringstream line;
    line << "cuda:" << d << (d == device_ ? " (this process)" : "") << ": " << p.name << ", sm_" << p.major
         << p.minor << ", " << p.multiProcessorCount << " SMs, " << std::fixed;
    line.precision(1);
    line << double(p.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0) << " GiB";
    if (d == device_)
      line << "; driver " << version(driver) << ", runtime " << version(runtime) << ", cuDNN "
           << cudnn_version / 10000 << "." << (cudnn_version % 10000) / 100 << "." << cudnn_version % 100
           << ", cuBLAS " << cublas_version / 10000 << "." << (cublas_version % 10000) / 100 << "."
           << cublas_version % 100;
    lines.push_back(line.str());
  }
  return lines;
}

void CudaBackend::set_precision(Precision precision) {
  // bf16 tensor-core products and cuDNN's bf16 kernels start with Ampere.
  if (precision == Precision::bf16 && compute_major_ < 8)
    fail("bf16 on CUDA needs compute capability 8.0 or newer; ", device_name_, " has ", compute_major_, ".x");
  precision_ = precision;
}

void CudaBackend::synchronize(const char* what) {
  cudaError_t status = cudaStreamSynchronize(stream_);
  if (status != cudaSuccess)
    fail("CUDA: ", what, " failed (reported at the stream's synchronisation): ", cudaGetErrorName(status), " (",
         cudaGetErrorString(status), ")");
}

std::shared_ptr<void> CudaBackend::allocate_bytes(std::size_t bytes) {
  // 256-byte granules: cudaMalloc's own alignment, and what the peak counts.
  std::size_t rounded = (std::max<std::size_t>(bytes, 1) + 255) / 256 * 256;
  void* raw = nullptr;
  cudaError_t status = cudaMalloc(&raw, rounded);
  if (status == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();  // not sticky: clear it so the message below is the one reported
    std::size_t free_bytes = 0, total_bytes = 0;
    TESSERA_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    fail("out of GPU memory on ", device_name_, ": could not allocate ", mebibytes(rounded), " MiB (", mebibytes(free_bytes),
         " MiB free of ", mebibytes(total_bytes), " MiB; this render holds ", mebibytes(allocated_bytes()),
         " MiB). Use more tiles (--tiles ROWSxCOLUMNS, or --tiles auto --memory-per-rank ",
         int(total_bytes / (1024.0 * 1024.0 * 1024.0) * 0.9), "GiB), --precision bf16, or a smaller size");
  }
  checked_status<CudaRuntime>(status, "cudaMalloc", __FILE__, __LINE__);
  count_allocated(rounded);
  return std::shared_ptr<void>(raw, [this, rounded](void* p) {
    // A deleter cannot throw; cudaFree fails only after an earlier error
    // that was reported where it happened.
    (void)cudaFree(p);
    count_freed(rounded);
  });
}

void CudaBackend::reserve_workspace(std::size_t bytes) {
  if (bytes <= workspace_bytes_) return;
  synchronize("waiting before growing the cuDNN workspace");  // a running layer may still use the old one
  workspace_.reset();
  workspace_ = allocate_bytes(bytes);
  workspace_bytes_ = bytes;
}

std::shared_ptr<void> CudaBackend::device_weights(const ConvWeights& weights, DataType type) {
  const std::uint64_t fingerprint = Backend::fingerprint(weights.weight);
  std::erase_if(weight_cache_, [](const CachedWeights& c) { return c.memory.expired(); });
  for (const auto& cached : weight_cache_)
    if (cached.fingerprint == fingerprint && cached.count == weights.weight.size() && cached.type == type)
      if (auto memory = cached.memory.lock()) return memory;

  // OIHW (Caffe, PyTorch) to KRSC: cuDNN's NHWC convolutions want the input
  // channel innermost in the filter too.
  const int o_count = weights.out_channels, i_count = weights.in_channels, kh = weights.kernel_h,
            kw = weights.kernel_w;
  const std::size_t count = weights.weight.size();
  std::vector<float> krsc(count);
  for (int o = 0; o < o_count; ++o)
    for (int i = 0; i < i_count; ++i)
      for (int r = 0; r < kh; ++r)
        for (int s = 0; s < kw; ++s)
          krsc[((std::size_t(o) * kh + r) * kw + s) * i_count + i] =
              weights.weight[((std::size_t(o) * i_count + i) * kh + r) * kw + s];
  auto memory = allocate_bytes(count * bytes_per_element(type));
  if (type == DataType::bf16) {
    std::vector<std::uint16_t> narrow(count);
    for (std::size_t k = 0; k < count; ++k) narrow[k] = float_to_bf16_bits(krsc[k]);
    TESSERA_CUDA_CHECK(cudaMemcpyAsync(memory.get(), narrow.data(), count * 2, cudaMemcpyHostToDevice, stream_));
    synchronize("uploading weights");
  } else {
    TESSERA_CUDA_CHECK(cudaMemcpyAsync(memory.get(), krsc.data(), count * 4, cudaMemcpyHostToDevice, stream_));
    synchronize("uploading weights");
  }
  weight_cache_.push_back({fingerprint, count, type, memory});
  return memory;
}

Tensor CudaBackend::do_allocate(Shape shape, Layout layout, Contents contents) {
  DataType type = layout == Layout::features ? feature_type() : DataType::f32;
  std::size_t count = shape.elements();
  // cuDNN's descriptors and our kernels' launches take 32-bit sizes. The
  // render job chooses tiles below this; anything else reaching it is a
  // request too large for one GPU tensor, refused here rather than wrapped.
  if (count > std::size_t(std::numeric_limits<std::int32_t>::max()))
    fail("a ", shape.describe(), " tensor holds ", count, " values, over the 2^31 - 1 one GPU tensor may hold: ",
         "use more tiles (--tiles auto chooses enough)");
  std::size_t bytes = count * bytes_per_element(type);
  std::shared_ptr<void> memory = allocate_bytes(bytes);
  // All bits set is a NaN in f32 and in bf16.
  if (contents == Contents::zeros) TESSERA_CUDA_CHECK(cudaMemsetAsync(memory.get(), 0, bytes, stream_));
  else if (poison_unset_buffers()) TESSERA_CUDA_CHECK(cudaMemsetAsync(memory.get(), 0xff, bytes, stream_));
  return Tensor(shape, layout, std::static_pointer_cast<float>(memory), count, type);
}

void CudaBackend::do_upload(std::span<const float> host, Tensor& tensor) {
  if (tensor.layout() == Layout::planar && tensor.type() == DataType::f32) {
    TESSERA_CUDA_CHECK(cudaMemcpyAsync(tensor.data(), host.data(), host.size_bytes(), cudaMemcpyHostToDevice, stream_));
    synchronize("upload");  // the caller may reuse its host memory at once
    return;
  }
  if (scratch_capacity_ < host.size()) {
    scratch_ = allocate_bytes(host.size() * sizeof(float));
    scratch_capacity_ = host.size();
  }
  Tensor planar(tensor.shape(), Layout::planar, std::static_pointer_cast<float>(scratch_), host.size());
  TESSERA_CUDA_CHECK(cudaMemcpyAsync(planar.data(), host.data(), host.size_bytes(), cudaMemcpyHostToDevice, stream_));
  convert(planar, tensor);
  synchronize("upload");
}

void CudaBackend::do_download(const Tensor& tensor, std::span<float> host) {
  const float* from = tensor.data();
  if (tensor.layout() != Layout::planar || tensor.type() != DataType::f32) {
    if (scratch_capacity_ < host.size()) {
      scratch_ = allocate_bytes(host.size() * sizeof(float));
      scratch_capacity_ = host.size();
    }
    Tensor planar(tensor.shape(), Layout::planar, std::static_pointer_cast<float>(scratch_), host.size());
    convert(tensor, planar);
    from = planar.data();
  }
  TESSERA_CUDA_CHECK(cudaMemcpyAsync(host.data(), from, host.size_bytes(), cudaMemcpyDeviceToHost, stream_));
  synchronize("download");
}

void CudaBackend::do_convert(const Tensor& source, Tensor& destination) {
  const Shape& s = source.shape();
  convert_kernel<<<blocks_for(s.elements(), kThreadsPerBlock, 8 * multiprocessors_), kThreadsPerBlock, 0, stream_>>>(
      Elements::of(source), source.layout() == Layout::planar, Elements::of(destination),
      destination.layout() == Layout::planar, s.channels, s.height, s.width);
  TESSERA_CUDA_CHECK_LAUNCH("convert");
}

int CudaBackend::reduction_blocks(std::size_t elements) const {
  return blocks_for(elements, kThreadsPerBlock, std::min(kMaxReductionBlocks, 4 * multiprocessors_));
}

double CudaBackend::finish_sum(int blocks) {
  auto* partials = static_cast<double*>(partials_.get());
  sum_partials<<<1, kThreadsPerBlock, 0, stream_>>>(partials, blocks, partials + kMaxReductionBlocks);
  TESSERA_CUDA_CHECK_LAUNCH("sum_partials");
  TESSERA_CUDA_CHECK(
      cudaMemcpyAsync(result_host_, partials + kMaxReductionBlocks, sizeof(double), cudaMemcpyDeviceToHost, stream_));
  synchronize("a reduction");
  return *result_host_;
}

double CudaBackend::do_squared_distance(const Tensor& a, const Tensor& b, const Box& window, float grad_scale,
                                     Tensor* grad_a) {
  const Shape& s = a.shape();
  const bool planar = a.layout() == Layout::planar;
  SquaredDistanceTerm term;
  term.a = Elements::of(a);
  term.b = Elements::of(b);
  term.grad = grad_a ? Elements::of(*grad_a) : Elements{};
  term.with_gradient = grad_a != nullptr;
  term.grad_scale = grad_scale;
  term.channels = s.channels;
  term.height = s.height;
  term.width = s.width;
  term.planar = planar;
  term.window = window;
  term.run_length = planar ? std::size_t(window.width()) : std::size_t(window.width()) * s.channels;
  const std::size_t n = (planar ? std::size_t(s.channels) : 1) * window.height() * term.run_length;
  const int blocks = reduction_blocks(n);
  reduce_sum<<<blocks, kThreadsPerBlock, 0, stream_>>>(term, n, static_cast<double*>(partials_.get()));
  TESSERA_CUDA_CHECK_LAUNCH("squared_distance");
  return finish_sum(blocks);
}

double CudaBackend::do_window_sum_abs(const Tensor& a, const Box& window) {
  const Shape& s = a.shape();
  WindowAbsTerm term;
  term.a = Elements::of(a);
  term.channels = s.channels;
  term.height = s.height;
  term.width = s.width;
  term.planar = a.layout() == Layout::planar;
  term.window = window;
  term.run_length = term.planar ? std::size_t(window.width()) : std::size_t(window.width()) * s.channels;
  const std::size_t n = (term.planar ? std::size_t(s.channels) : 1) * window.height() * term.run_length;
  const int blocks = reduction_blocks(n);
  reduce_sum<<<blocks, kThreadsPerBlock, 0, stream_>>>(term, n, static_cast<double*>(partials_.get()));
  TESSERA_CUDA_CHECK_LAUNCH("window_sum_abs");
  return finish_sum(blocks);
}

double CudaBackend::do_total_variation(const Tensor& image, float weight, Tensor& grad, const Box& counted) {
  const Shape& s = image.shape();
  TotalVariationTerm term{image.data(), grad.data(), s.height, s.width, weight, counted};
  const std::size_t n = s.elements();
  const int blocks = reduction_blocks(n);
  reduce_sum<<<blocks, kThreadsPerBlock, 0, stream_>>>(term, n, static_cast<double*>(partials_.get()));
  TESSERA_CUDA_CHECK_LAUNCH("total_variation");
  return 0.5 * weight * finish_sum(blocks);
}

void CudaBackend::do_copy_window(const Tensor& source, const Box& window, Tensor& destination, int x, int y) {
  const Shape& s = source.shape();
  const Shape& d = destination.shape();
  for (int c = 0; c < s.channels; ++c)
    TESSERA_CUDA_CHECK(cudaMemcpy2DAsync(
        destination.data() + (std::size_t(c) * d.height + y) * d.width + x, std::size_t(d.width) * sizeof(float),
        source.data() + (std::size_t(c) * s.height + window.y0) * s.width + window.x0,
        std::size_t(s.width) * sizeof(float), std::size_t(window.width()) * sizeof(float), window.height(),
        cudaMemcpyDeviceToDevice, stream_));
}

double CudaBackend::do_dot(const Tensor& a, const Tensor& b) {
  const std::size_t n = a.elements();
  const int blocks = reduction_blocks(n);
  reduce_sum<<<blocks, kThreadsPerBlock, 0, stream_>>>(DotTerm{a.data(), b.data()}, n,
                                                       static_cast<double*>(partials_.get()));
  TESSERA_CUDA_CHECK_LAUNCH("dot");
  return finish_sum(blocks);
}

double CudaBackend::do_sum_abs(const Tensor& a) {
  const std::size_t n = a.elements();
  const int blocks = reduction_blocks(n);
  reduce_sum<<<blocks, kThreadsPerBlock, 0, stream_>>>(AbsTerm{a.data()}, n, static_cast<double*>(partials_.get()));
  TESSERA_CUDA_CHECK_LAUNCH("sum_abs");
  return finish_sum(blocks);
}

void CudaBackend::do_fill(Tensor& a, float value) {
  const std::size_t n = a.elements();
  if (n == 0) return;
  if (value == 0.0f) {  // all-zero bits in both types
    TESSERA_CUDA_CHECK(cudaMemsetAsync(a.data(), 0, n * bytes_per_element(a.type()), stream_));
    return;
  }
  fill_kernel<<<blocks_for(n, kThreadsPerBlock, 8 * multiprocessors_), kThreadsPerBlock, 0, stream_>>>(
      Elements::of(a), n, value);
  TESSERA_CUDA_CHECK_LAUNCH("fill");
}

void CudaBackend::do_copy(const Tensor& source, Tensor& destination) {
  if (source.type() != destination.type()) fail("internal: copy between element types");
  if (source.data() != destination.data() && source.elements() > 0)
    TESSERA_CUDA_CHECK(cudaMemcpyAsync(destination.data(), source.data(),
                                       source.elements() * bytes_per_element(source.type()),
                                       cudaMemcpyDeviceToDevice, stream_));
}

void CudaBackend::do_scale(Tensor& a, float factor) {
  const std::size_t n = a.elements();
  if (n == 0) return;
  scale_kernel<<<blocks_for(n, kThreadsPerBlock, 8 * multiprocessors_), kThreadsPerBlock, 0, stream_>>>(a.data(), n,
                                                                                                        factor);
  TESSERA_CUDA_CHECK_LAUNCH("scale");
}

void CudaBackend::do_axpy(float alpha, const Tensor& x, Tensor& y) {
  const std::size_t n = x.elements();
  if (n == 0) return;
  axpy_kernel<<<blocks_for(n, kThreadsPerBlock, 8 * multiprocessors_), kThreadsPerBlock, 0, stream_>>>(
      alpha, Elements::of(x), Elements::of(y), n);
  TESSERA_CUDA_CHECK_LAUNCH("axpy");
}

void CudaBackend::do_subtract(const Tensor& a, const Tensor& b, Tensor& d) {
  const std::size_t n = a.elements();
  if (n == 0) return;
  subtract_kernel<<<blocks_for(n, kThreadsPerBlock, 8 * multiprocessors_), kThreadsPerBlock, 0, stream_>>>(
      a.data(), b.data(), d.data(), n);
  TESSERA_CUDA_CHECK_LAUNCH("subtract");
}

void CudaBackend::do_dot_products(std::span<const Tensor* const> rows, std::span<const Tensor* const> columns,
                                  std::span<double> products) {
  const std::size_t n = rows.front()->elements(), R = rows.size(), C = columns.size();
  if (n == 0) {
    std::fill(products.begin(), products.end(), 0.0);
    return;
  }
  // Partial sums stay on the device and one copy brings every product back:
  // no synchronisation per product.
  const int blocks = reduction_blocks(n);
  double* partials = static_cast<double*>(device_scratch(products_scratch_, products_capacity_,
                                                         (R * C * std::size_t(blocks) + R * C) * sizeof(double)));
  double* results = partials + R * C * std::size_t(blocks);
  for (std::size_t r0 = 0; r0 < R; r0 += kRowsPerPass) {
    RowSet set{};
    set.count = int(std::min<std::size_t>(kRowsPerPass, R - r0));
    for (int r = 0; r < set.count; ++r) set.rows[r] = rows[r0 + r]->data();
    for (std::size_t c = 0; c < C; ++c) {
      // Product k = r * C + c has its partial sums at partials + k * blocks.
      rows_dot_column<<<blocks, kThreadsPerBlock, 0, stream_>>>(set, columns[c]->data(), n,
                                                                partials + (r0 * C + c) * blocks, C * blocks);
      TESSERA_CUDA_CHECK_LAUNCH("rows_dot_column");
    }
  }
  sum_partial_groups<<<int(R * C), kThreadsPerBlock, 0, stream_>>>(partials, blocks, results);
  TESSERA_CUDA_CHECK_LAUNCH("sum_partial_groups");
  TESSERA_CUDA_CHECK(
      cudaMemcpyAsync(products.data(), results, products.size_bytes(), cudaMemcpyDeviceToHost, stream_));
  synchronize("dot_products");
}

void CudaBackend::do_combine(std::span<const Tensor* const> terms, std::span<const double> coefficients, Tensor& out) {
  const std::size_t n = out.elements(), count = terms.size();
  if (n == 0) return;
  // The term pointers and coefficients travel in one device buffer; a copy
  // from pageable memory has read the host vector when it returns.
  std::vector<unsigned char> arguments(count * (sizeof(const float*) + sizeof(double)));
  for (std::size_t k = 0; k < count; ++k) {
    const float* pointer = terms[k]->data();
    std::memcpy(arguments.data() + k * sizeof pointer, &pointer, sizeof pointer);
  }
  std::memcpy(arguments.data() + count * sizeof(const float*), coefficients.data(), count * sizeof(double));
  auto* device = static_cast<unsigned char*>(device_scratch(combine_scratch_, combine_capacity_, arguments.size()));
  TESSERA_CUDA_CHECK(cudaMemcpyAsync(device, arguments.data(), arguments.size(), cudaMemcpyHostToDevice, stream_));
  combine_kernel<<<blocks_for(n, kThreadsPerBlock, 8 * multiprocessors_), kThreadsPerBlock, 0, stream_>>>(
      reinterpret_cast<const float* const*>(device),
      reinterpret_cast<const double*>(device + count * sizeof(const float*)), int(count), out.data(), n);
  TESSERA_CUDA_CHECK_LAUNCH("combine");
}

void* CudaBackend::device_scratch(std::shared_ptr<void>& buffer, std::size_t& capacity, std::size_t bytes) {
  if (bytes > capacity) {
    // The buffer may still be read by work queued on the stream.
    synchronize("growing a scratch buffer");
    buffer.reset();
    buffer = allocate_bytes(bytes);
    capacity = bytes;
  }
  return buffer.get();
}

std::size_t CudaBackend::free_device_bytes() const {
  std::size_t free_bytes = 0, total_bytes = 0;
  TESSERA_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  return free_bytes;
}

// The sums stay on the device: each block's Gram partial is added by a
// kernel queued behind the one that computed it, with no copy and no wait.
DoubleBuffer CudaBackend::do_allocate_doubles(std::size_t count) {
  std::shared_ptr<void> memory = allocate_bytes(count * sizeof(double));
  TESSERA_CUDA_CHECK(cudaMemsetAsync(memory.get(), 0, count * sizeof(double), stream_));
  return DoubleBuffer(std::static_pointer_cast<double>(memory), count);
}

void CudaBackend::do_clear(DoubleBuffer& sums) {
  TESSERA_CUDA_CHECK(cudaMemsetAsync(sums.data(), 0, sums.bytes(), stream_));
}

void CudaBackend::do_accumulate_double(const Tensor& values, DoubleBuffer& sums, std::size_t offset) {
  const std::size_t n = values.elements();
  accumulate_double_kernel<<<blocks_for(n, kThreadsPerBlock, 8 * multiprocessors_), kThreadsPerBlock, 0, stream_>>>(
      values.data(), sums.data() + offset, n);
  TESSERA_CUDA_CHECK_LAUNCH("accumulate_double");
}

void CudaBackend::do_assign_from_double(const DoubleBuffer& sums, std::size_t offset, Tensor& values) {
  const std::size_t n = values.elements();
  assign_from_double_kernel<<<blocks_for(n, kThreadsPerBlock, 8 * multiprocessors_), kThreadsPerBlock, 0, stream_>>>(
      sums.data() + offset, values.data(), n);
  TESSERA_CUDA_CHECK_LAUNCH("assign_from_double");
}

void CudaBackend::do_write_doubles(std::span<const double> values, DoubleBuffer& sums, std::size_t offset) {
  TESSERA_CUDA_CHECK(
      cudaMemcpyAsync(sums.data() + offset, values.data(), values.size_bytes(), cudaMemcpyHostToDevice, stream_));
  synchronize("write_doubles");  // the caller may reuse its host memory at once
}

void CudaBackend::do_read_doubles(const DoubleBuffer& sums, std::size_t offset, std::span<double> values) {
  TESSERA_CUDA_CHECK(
      cudaMemcpyAsync(values.data(), sums.data() + offset, values.size_bytes(), cudaMemcpyDeviceToHost, stream_));
  synchronize("read_doubles");
}

void CudaBackend::do_adam_update(Tensor& x, const Tensor& g, Tensor& m, Tensor& v, const AdamState& state) {
  const float step = state.step_size();  // adam.lua's, bias corrections folded in
  const std::size_t n = x.elements();
  if (n == 0) return;
  adam_kernel<<<blocks_for(n, kThreadsPerBlock, 8 * multiprocessors_), kThreadsPerBlock, 0, stream_>>>(
      x.data(), g.data(), m.data(), v.data(), n, step, state.beta1, state.beta2, state.epsilon);
  TESSERA_CUDA_CHECK_LAUNCH("adam_update");
}

}  // namespace tessera::cuda
