#include <algorithm>
#include <chrono>

#include "tessera/communicator.hpp"

namespace tessera {

CommunicationCounts CommunicationCounts::since(const CommunicationCounts& earlier) const {
  CommunicationCounts d;
  d.collectives = collectives - earlier.collectives;
  d.collective_bytes = collective_bytes - earlier.collective_bytes;
  d.collective_seconds = collective_seconds - earlier.collective_seconds;
  d.messages = messages - earlier.messages;
  d.message_bytes = message_bytes - earlier.message_bytes;
  return d;
}

template <typename Call>
auto Communicator::counted(std::size_t bytes, Call&& call) {
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  // Counted even when the call throws: the count says what was attempted.
  struct Count {
    CommunicationCounts& counts;
    std::size_t bytes;
    clock::time_point start;
    ~Count() {
      ++counts.collectives;
      counts.collective_bytes += static_cast<long long>(bytes);
      counts.collective_seconds += std::chrono::duration<double>(clock::now() - start).count();
    }
  } count{counts_, bytes, start};
  return call();
}

void Communicator::sum(std::span<double> values) {
  counted(values.size_bytes(), [&] { do_sum(values); });
}

void Communicator::sum(std::span<float> values) {
  counted(values.size_bytes(), [&] { do_sum(values); });
}

double Communicator::max(double value) {
  return counted(sizeof value, [&] { return do_max(value); });
}

std::unique_ptr<PendingExchange> Communicator::begin_exchange(const std::vector<Transfer>& sends,
                                                              const std::vector<Transfer>& receives) {
  for (const auto& send : sends) {
    ++counts_.messages;
    counts_.message_bytes += static_cast<long long>(send.data.size_bytes());
  }
  return do_begin_exchange(sends, receives);
}

void Communicator::gather_to_root(std::span<const float> local, std::vector<float>& gathered) {
  counted(local.size_bytes(), [&] { do_gather_to_root(local, gathered); });
}

void Communicator::broadcast(std::vector<float>& values) {
  // The bytes are rank 0's: the other ranks learn the size in the call.
  const std::size_t before = values.size();
  counted(0, [&] { do_broadcast(values); });
  counts_.collective_bytes += static_cast<long long>(std::max(before, values.size()) * sizeof(float));
}

}  // namespace tessera
