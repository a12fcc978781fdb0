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

namespace tessera::cuda {

// After a kernel launch: a bad configuration shows up here, named by the
// kernel, and is cleared (cudaGetLastError), so that the next call's check
// does not report it again under its own name; a fault inside the kernel
// shows at the next synchronising call (also checked).
inline void check_launch(const char* kernel, const char* file, int line) {
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess)
    fail_call(CudaRuntime::name, std::string("launch of kernel ") + kernel, file, line, CudaRuntime::describe(status));
}

}  // namespace tessera::cuda

#define TESSERA_CUDA_CHECK_LAUNCH(what) ::tessera::cuda::check_launch((what), __FILE__, __LINE__)
