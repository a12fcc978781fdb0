// Checks that every rank makes alike (the options, the weights file) and
// whose failure every rank then learns of, so that a mistake is reported
// once and the job ends without MPI_Abort's banner from each rank.
#pragma once

#include <optional>
#include <string>
#include <utility>

#include "tessera/communicator.hpp"
#include "tessera/error.hpp"

namespace tessera::job {

// Thrown on every rank once the ranks agree that one of them failed; only
// the lowest failing rank says why (`speak`), and every rank then exits 1
// on its own, the job's collectives all matched.
class AgreedFailure : public Error {
 public:
  AgreedFailure(const std::string& message, bool speak) : Error(message), speak_(speak) {}
  bool speak() const { return speak_; }

 private:
  bool speak_;
};

// One collective: a failure on any rank (its message, empty where the rank
// succeeded) becomes an AgreedFailure on all of them.
void settle_failures(Communicator& communicator, const std::string& failure);

// Runs `work` (the same on every rank) and returns what it returns, or
// throws AgreedFailure on every rank where it failed on any of them.
template <typename Work>
auto agreed(Communicator& communicator, Work&& work) {
  if (communicator.size() == 1) return work();
  std::optional<decltype(work())> result;
  std::string failure;
  try {
    result.emplace(work());
  } catch (const Error& e) {
    failure = e.what();
    if (failure.empty()) failure = "failed";
  }
  settle_failures(communicator, failure);
  return std::move(*result);
}

}  // namespace tessera::job
