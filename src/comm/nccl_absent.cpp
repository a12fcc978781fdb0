#include "comm/device_communicator.hpp"

namespace tessera {

std::unique_ptr<Communicator> make_device_communicator(Communicator& world, Backend& backend, std::string& why_not) {
  why_not.clear();
  if (world.size() > 1 && !backend.host_memory())
    why_not = "this build has no NCCL: the ranks' sums and halos go through MPI, by way of host memory";
  return nullptr;
}

}  // namespace tessera
