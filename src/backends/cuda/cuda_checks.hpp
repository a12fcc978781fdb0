// Checked calls: one macro per library turns a failed status into a
// tessera::Error that names the call, where it was made, and the library's
// own message. No status of CUDA, cuDNN or cuBLAS is ever ignored.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include "tessera/error.hpp"

namespace tessera::cuda {

[[noreturn]] inline void fail_cuda(const char* call, const char* file, int line, cudaError_t status) {
  fail("CUDA call ", call, " failed at ", file, ":", line, ": ", cudaGetErrorName(status), " (",
       cudaGetErrorString(status), ")");
}

}  // namespace tessera::cuda

#define TESSERA_CUDA_CHECK(call)                                                   \
  do {                                                                             \
    cudaError_t tessera_status_ = (call);                                          \
    if (tessera_status_ != cudaSuccess)                                            \
      ::tessera::cuda::fail_cuda(#call, __FILE__, __LINE__, tessera_status_);      \
  } while (0)

// After a kernel launch: a bad configuration shows up here, a fault in the
// kernel at the next synchronising call (also checked).
#define TESSERA_CUDA_CHECK_LAUNCH(what) TESSERA_CUDA_CHECK(cudaPeekAtLastError())

#define TESSERA_CUDNN_CHECK(call)                                                                   \
  do {                                                                                              \
    cudnnStatus_t tessera_status_ = (call);                                                         \
    if (tessera_status_ != CUDNN_STATUS_SUCCESS)                                                    \
      ::tessera::fail("cuDNN call ", #call, " failed at ", __FILE__, ":", __LINE__, ": ",           \
                      cudnnGetErrorString(tessera_status_), " (status ", int(tessera_status_), ")"); \
  } while (0)

#define TESSERA_CUBLAS_CHECK(call)                                                                       \
  do {                                                                                                   \
    cublasStatus_t tessera_status_ = (call);                                                             \
    if (tessera_status_ != CUBLAS_STATUS_SUCCESS)                                                        \
      ::tessera::fail("cuBLAS call ", #call, " failed at ", __FILE__, ":", __LINE__, ": ",               \
                      cublasGetStatusString(tessera_status_), " (status ", int(tessera_status_), \
                      ")");                                                                              \
  } while (0)
