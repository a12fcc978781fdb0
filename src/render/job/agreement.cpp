#include "render/job/agreement.hpp"

namespace tessera::job {

void settle_failures(Communicator& communicator, const std::string& failure) {
  const int size = communicator.size();
  // The lowest failing rank, or `size` where none failed, as a max of negatives.
  const int lowest = int(-communicator.max(-double(failure.empty() ? size : communicator.rank())));
  if (lowest == size) return;
  if (failure.empty())
    throw AgreedFailure("rank " + std::to_string(lowest) + " failed", false);
  throw AgreedFailure(failure, communicator.rank() == lowest);
}

}  // namespace tessera::job
