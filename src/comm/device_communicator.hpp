// Choosing the communicator of a render once its backend is made: NCCL
// where the backend's memory is a GPU's and every rank has a GPU of its
// own, the process's communicator (MPI) everywhere else. Implemented by
// nccl_communicator.cpp when NCCL is built, else by nccl_absent.cpp.
#pragma once

#include <memory>
#include <string>

#include "tessera/backend.hpp"
#include "tessera/communicator.hpp"

namespace tessera {

// NCCL over `world` for a render of several ranks on `backend`'s GPU; or
// nullptr, with the reason in `why_not` (empty where there is nothing to
// say: one rank, or the CPU backend), and the render stays on `world`.
// Collective over `world`: every rank calls it with the same backend kind.
std::unique_ptr<Communicator> make_device_communicator(Communicator& world, Backend& backend, std::string& why_not);

}  // namespace tessera
