// What the registry asks of the CUDA backend. Implemented by
// cuda/cuda_backend.cu when CUDA is built, else by cuda_absent.cpp.
#pragma once

#include <memory>
#include <string>

#include "tessera/backend.hpp"

namespace tessera::cuda {

bool compiled();
// GPUs this process can use. 0, with the reason in `why_none`, when there are
// none, the driver is missing or too old (cudaErrorInsufficientDriver), or
// CUDA is not compiled in: never an exception, so that "auto" and
// `tessera info` work on every machine.
int usable_device_count(std::string& why_none);
std::unique_ptr<Backend> make_cuda_backend();

}  // namespace tessera::cuda
