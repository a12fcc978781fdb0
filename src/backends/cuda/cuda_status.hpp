// The CUDA runtime as tessera::checked_status sees it (tessera/checked_call.hpp):
// apart from cuDNN and cuBLAS, so that code needing only the runtime (the
// NCCL communicator) checks its calls the same way.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "tessera/checked_call.hpp"

namespace tessera::cuda {

struct CudaRuntime {
  static constexpr const char* name = "CUDA";
  static bool ok(cudaError_t status) { return status == cudaSuccess; }
  static std::string describe(cudaError_t status) {
    return std::string(cudaGetErrorName(status)) + " (" + cudaGetErrorString(status) + ")";
  }
};

}  // namespace tessera::cuda

#define TESSERA_CUDA_CHECK(call) TESSERA_CHECK(::tessera::cuda::CudaRuntime, call)

// After a kernel launch: a bad configuration shows up here, a fault in the
// kernel at the next synchronising call (also checked).
#define TESSERA_CUDA_CHECK_LAUNCH(what) TESSERA_CUDA_CHECK(cudaPeekAtLastError())
