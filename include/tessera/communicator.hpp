// How the ranks of a render agree on global sums: Gram matrices, loss values
// and every dot product the optimiser takes. One process is the trivial case.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "tessera/error.hpp"
#include "tessera/tensor.hpp"

namespace tessera {

class Backend;
class DoubleBuffer;

// One point-to-point message of a halo exchange.
struct Transfer {
  int peer = 0;
  std::span<float> data;
};

// One message of a halo exchange in a backend's memory: all of `buffer`
// (planar f32).
struct BufferTransfer {
  int peer = 0;
  Tensor buffer;
};

// An exchange begun and not yet complete (Communicator::begin_exchange):
// its buffers stay untouched until finish(), which a destructor calls where
// the caller did not (an error on the way: the messages must not outlive
// their buffers).
class PendingExchange {
 public:
  virtual ~PendingExchange() = default;
  virtual void finish() = 0;
};

// What a communicator has carried since it was made, on this rank: the
// collective calls (sums, maxima, gathers, broadcasts: each a point where
// every rank waits for the others) with the bytes this rank put in and the
// seconds spent in them, and the point-to-point messages of halo exchanges
// this rank sent. Scaling studies count these rather than assume them.
struct CommunicationCounts {
  long long collectives = 0;
  long long collective_bytes = 0;
  double collective_seconds = 0.0;
  long long messages = 0;
  long long message_bytes = 0;
  CommunicationCounts since(const CommunicationCounts& earlier) const;
};

// The public calls are the same for every communicator: each counts itself
// (CommunicationCounts) and hands over to the implementation's private do_
// function.
//
// Spans are host memory. Backend buffers (a DoubleBuffer or Tensor of a
// Backend) go through the calls that take the backend: a communicator that
// can reach the device's memory (NCCL) reduces and sends them where they
// are; any other passes the CPU backend's memory as it is, and stages a
// device's through the host.
class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // In-place sums across all ranks.
  void sum(std::span<double> values);
  void sum(std::span<float> values);
  double max(double value);
  // In-place sum across ranks of a backend's double buffer.
  void sum(Backend& backend, DoubleBuffer& values);
  // Posts every receive and send (at most one message per peer each way)
  // and returns at once, so that work can overlap the messages; finish()
  // on the result waits for all of them.
  std::unique_ptr<PendingExchange> begin_exchange(const std::vector<Transfer>& sends,
                                                  const std::vector<Transfer>& receives);
  void exchange(const std::vector<Transfer>& sends, const std::vector<Transfer>& receives) {
    begin_exchange(sends, receives)->finish();
  }
  // The same for buffers in `backend`'s memory: the receives are in place
  // after finish().
  std::unique_ptr<PendingExchange> begin_exchange(Backend& backend, const std::vector<BufferTransfer>& sends,
                                                  const std::vector<BufferTransfer>& receives);
  // Rank 0 receives every rank's `local` into `gathered` (in rank order);
  // sizes may differ between ranks. Other ranks get `gathered` empty.
  void gather_to_root(std::span<const float> local, std::vector<float>& gathered);
  // Rank 0's `values` (any size) to every rank.
  void broadcast(std::vector<float>& values);

  double sum(double value) {
    sum(std::span<double>(&value, 1));
    return value;
  }
  // Rank 0's text to every rank. For short messages (settings, a resumed
  // render's state): each byte travels as a float, which holds it exactly.
  void broadcast(std::string& text) {
    std::vector<float> values(text.begin(), text.end());
    for (auto& v : values) v = float(static_cast<unsigned char>(v));
    broadcast(values);
    text.assign(values.size(), '\0');
    for (std::size_t i = 0; i < values.size(); ++i) text[i] = char(static_cast<unsigned char>(values[i]));
  }

  const CommunicationCounts& counts() const { return counts_; }

 private:
  virtual void do_sum(std::span<double> values) = 0;
  virtual void do_sum(std::span<float> values) = 0;
  virtual double do_max(double value) = 0;
  virtual std::unique_ptr<PendingExchange> do_begin_exchange(const std::vector<Transfer>& sends,
                                                             const std::vector<Transfer>& receives) = 0;
  virtual void do_gather_to_root(std::span<const float> local, std::vector<float>& gathered) = 0;
  virtual void do_broadcast(std::vector<float>& values) = 0;
  // Backend buffers: by default, the CPU backend's memory as it is and a
  // device's staged through host memory (see communicator.cpp).
  virtual void do_sum(Backend& backend, DoubleBuffer& values);
  virtual std::unique_ptr<PendingExchange> do_begin_exchange(Backend& backend,
                                                             const std::vector<BufferTransfer>& sends,
                                                             const std::vector<BufferTransfer>& receives);

 protected:
  // The default paths above, for implementations that take some buffers
  // themselves and leave the rest to them.
  void sum_through_host(Backend& backend, DoubleBuffer& values);
  std::unique_ptr<PendingExchange> exchange_through_host(Backend& backend, const std::vector<BufferTransfer>& sends,
                                                         const std::vector<BufferTransfer>& receives);

 private:
  // Times `call`, a collective this rank puts `bytes` into, and counts it.
  template <typename Call>
  auto counted(std::size_t bytes, Call&& call);

  CommunicationCounts counts_;
};

// Where two ranks of `world` would share one device: every rank gives its
// device's identity (its node and the GPU's PCI bus id, say), and every
// rank gets the same answer: a sentence naming the first two ranks that
// share one, or empty when each rank has its own. Collective.
std::string shared_device(Communicator& world, const std::string& device);

// A render in one process: every reduction is the identity.
class SingleProcess final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }

 private:
  void do_sum(std::span<double>) override {}
  void do_sum(std::span<float>) override {}
  double do_max(double value) override { return value; }
  std::unique_ptr<PendingExchange> do_begin_exchange(const std::vector<Transfer>& sends,
                                                     const std::vector<Transfer>& receives) override {
    struct Nothing final : PendingExchange {
      void finish() override {}
    };
    if (!sends.empty() || !receives.empty()) fail("internal: a single process has no peers to exchange with");
    return std::make_unique<Nothing>();
  }
  void do_gather_to_root(std::span<const float> local, std::vector<float>& gathered) override {
    gathered.assign(local.begin(), local.end());
  }
  void do_broadcast(std::vector<float>&) override {}
  // The identity needs no staging of a device's buffer through the host.
  void do_sum(Backend&, DoubleBuffer&) override {}
};

}  // namespace tessera
