// A backend whose memory the communicators must treat as a device's: the
// CPU backend's operations, with host_memory() false. Renders on it take
// the path a GPU render without NCCL takes (the statistics and halo
// messages staged through host memory), on machines with no GPU.
#pragma once

#include <memory>

#include "tessera/backend.hpp"

namespace tessera::testing {

std::unique_ptr<Backend> staged_backend(std::unique_ptr<Backend> inner);

}  // namespace tessera::testing
