// A build without the CUDA backend: the registry's questions about CUDA
// answered once, so that no other file needs an #ifdef.
#include "backends/cuda_registration.hpp"

#include "tessera/error.hpp"

namespace tessera::cuda {

bool compiled() { return false; }

int usable_device_count(std::string& why_none) {
  why_none = "the CUDA backend is not compiled into this build (nvcc was not found when it was configured)";
  return 0;
}

std::unique_ptr<Backend> make_cuda_backend() {
  fail("backend 'cuda' is not compiled into this build (nvcc was not found when it was configured; available: cpu)");
}

}  // namespace tessera::cuda
