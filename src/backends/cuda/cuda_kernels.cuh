// Device-side helpers shared by the backend's kernels: element access for
// either storage type, and the index arithmetic of the two layouts.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "tessera/tensor.hpp"

namespace tessera::cuda {

// A tensor's memory seen as floats, whichever type it stores: bf16 widens
// exactly, and narrows rounding to nearest even (as the CPU backend does).
struct Elements {
  float* f32 = nullptr;
  __nv_bfloat16* bf16 = nullptr;

  static Elements of(const Tensor& t) {
    Elements e;
    if (t.type() == DataType::bf16)
      e.bf16 = reinterpret_cast<__nv_bfloat16*>(const_cast<float*>(t.data()));
    else
      e.f32 = const_cast<float*>(t.data());
    return e;
  }
  __device__ float get(std::size_t i) const { return f32 ? f32[i] : __bfloat162float(bf16[i]); }
  __device__ void set(std::size_t i, float v) const {
    if (f32)
      f32[i] = v;
    else
      bf16[i] = __float2bfloat16_rn(v);
  }
};

// Index of element (c, y, x) of a channels x height x width map.
__host__ __device__ inline std::size_t offset_of(int channels, int height, int width, bool planar, int c, int y,
                                                 int x) {
  if (planar) return (std::size_t(c) * height + y) * width + x;
  return (std::size_t(y) * width + x) * channels + c;
}

// Round to nearest even, NaN kept: the CPU backend's rule, so that both hold
// the same bf16 weights and biases.
inline std::uint16_t float_to_bf16_bits(float value) {
  std::uint32_t bits;
  std::memcpy(&bits, &value, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return std::uint16_t((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return std::uint16_t(bits >> 16);
}

inline int blocks_for(std::size_t elements, int threads, int most) {
  std::size_t blocks = (elements + threads - 1) / threads;
  if (blocks < 1) blocks = 1;
  return int(blocks < std::size_t(most) ? blocks : most);
}

}  // namespace tessera::cuda
