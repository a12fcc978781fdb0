#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "tessera/communicator.hpp"

#include "tessera/backend.hpp"

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

void Communicator::sum(Backend& backend, DoubleBuffer& values) {
  counted(values.bytes(), [&] { do_sum(backend, values); });
}

std::unique_ptr<PendingExchange> Communicator::begin_exchange(Backend& backend, const std::vector<BufferTransfer>& sends,
                                                              const std::vector<BufferTransfer>& receives) {
  for (const auto& send : sends) {
    ++counts_.messages;
    counts_.message_bytes += static_cast<long long>(send.buffer.elements() * sizeof(float));
  }
  for (const auto* group : {&sends, &receives})
    for (const auto& transfer : *group)
      if (transfer.buffer.layout() != Layout::planar || transfer.buffer.type() != DataType::f32)
        fail("internal: exchanged buffers are planar f32");
  return do_begin_exchange(backend, sends, receives);
}

void Communicator::do_sum(Backend& backend, DoubleBuffer& values) { sum_through_host(backend, values); }

std::unique_ptr<PendingExchange> Communicator::do_begin_exchange(Backend& backend,
                                                                 const std::vector<BufferTransfer>& sends,
                                                                 const std::vector<BufferTransfer>& receives) {
  return exchange_through_host(backend, sends, receives);
}

void Communicator::sum_through_host(Backend& backend, DoubleBuffer& values) {
  if (backend.host_memory()) {
    do_sum(std::span<double>(values.data(), values.size()));
    return;
  }
  std::vector<double> host(values.size());
  backend.read_doubles(values, 0, host);
  do_sum(std::span<double>(host));
  backend.write_doubles(host, values, 0);
}

std::unique_ptr<PendingExchange> Communicator::exchange_through_host(Backend& backend,
                                                                     const std::vector<BufferTransfer>& sends,
                                                                     const std::vector<BufferTransfer>& receives) {
  auto span_of = [](const Tensor& t) { return std::span<float>(const_cast<float*>(t.data()), t.elements()); };
  if (backend.host_memory()) {
    std::vector<Transfer> host_sends, host_receives;
    for (const auto& t : sends) host_sends.push_back({t.peer, span_of(t.buffer)});
    for (const auto& t : receives) host_receives.push_back({t.peer, span_of(t.buffer)});
    return do_begin_exchange(host_sends, host_receives);
  }
  // Downloaded now, sent over host memory, and uploaded when finished.
  class Staged final : public PendingExchange {
   public:
    Staged(Backend& backend, std::vector<BufferTransfer> receives)
        : backend_(backend), receives_(std::move(receives)) {}
    void finish() override {
      inner->finish();
      for (std::size_t i = 0; i < receives_.size(); ++i) backend_.upload(receive_data[i], receives_[i].buffer);
    }
    std::vector<std::vector<float>> send_data, receive_data;
    std::unique_ptr<PendingExchange> inner;

   private:
    Backend& backend_;
    std::vector<BufferTransfer> receives_;
  };
  auto staged = std::make_unique<Staged>(backend, receives);
  std::vector<Transfer> host_sends, host_receives;
  for (const auto& t : sends) {
    staged->send_data.emplace_back(t.buffer.elements());
    backend.download(t.buffer, staged->send_data.back());
  }
  for (const auto& t : receives) staged->receive_data.emplace_back(t.buffer.elements());
  for (std::size_t i = 0; i < sends.size(); ++i) host_sends.push_back({sends[i].peer, staged->send_data[i]});
  for (std::size_t i = 0; i < receives.size(); ++i)
    host_receives.push_back({receives[i].peer, staged->receive_data[i]});
  staged->inner = do_begin_exchange(host_sends, host_receives);
  return staged;
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

std::string shared_device(Communicator& world, const std::string& device) {
  // Each identity's bytes travel as floats (each holds a byte exactly),
  // with its length first.
  std::vector<float> mine{float(device.size())};
  for (unsigned char c : device) mine.push_back(float(c));
  std::vector<float> gathered;
  world.gather_to_root(mine, gathered);
  std::string answer;
  if (world.rank() == 0) {
    std::vector<std::string> devices;
    for (std::size_t i = 0; i < gathered.size();) {
      const std::size_t length = std::size_t(gathered[i++]);
      std::string text;
      for (std::size_t k = 0; k < length && i < gathered.size(); ++k) text += char(static_cast<unsigned char>(gathered[i++]));
      devices.push_back(std::move(text));
    }
    for (std::size_t a = 0; a < devices.size() && answer.empty(); ++a)
      for (std::size_t b = a + 1; b < devices.size() && answer.empty(); ++b)
        if (devices[a] == devices[b])
          answer = "ranks " + std::to_string(a) + " and " + std::to_string(b) + " share " + devices[a];
  }
  world.broadcast(answer);
  return answer;
}

}  // namespace tessera
