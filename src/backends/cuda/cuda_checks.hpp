// Checked calls of the CUDA backend's libraries, through the one generator
// of tessera/checked_call.hpp: no status of CUDA, cuDNN or cuBLAS is ever
// ignored.
#pragma once

#include <cublas_v2.h>
#include <cudnn.h>

#include <string>

#include "backends/cuda/cuda_status.hpp"

namespace tessera::cuda {

struct Cudnn {
  static constexpr const char* name = "cuDNN";
  static bool ok(cudnnStatus_t status) { return status == CUDNN_STATUS_SUCCESS; }
  static std::string describe(cudnnStatus_t status) {
    return std::string(cudnnGetErrorString(status)) + " (status " + std::to_string(int(status)) + ")";
  }
};

struct Cublas {
  static constexpr const char* name = "cuBLAS";
  static bool ok(cublasStatus_t status) { return status == CUBLAS_STATUS_SUCCESS; }
  static std::string describe(cublasStatus_t status) {
    return std::string(cublasGetStatusString(status)) + " (status " + std::to_string(int(status)) + ")";
  }
};

}  // namespace tessera::cuda

#define TESSERA_CUDNN_CHECK(call) TESSERA_CHECK(::tessera::cuda::Cudnn, call)
#define TESSERA_CUBLAS_CHECK(call) TESSERA_CHECK(::tessera::cuda::Cublas, call)
