// The communicator over NCCL, for a render whose ranks each have a GPU of
// their own: the backend's buffers (the statistics' double buffer, the
// halo messages) are reduced and sent where they are, in GPU memory; the
// host values of the interface's span calls (the optimiser's few products,
// maxima, the gathered image) go through the bootstrap communicator (MPI),
// which also carries NCCL's unique id from rank 0 to the others.
//
// Each NCCL call waits for the work already queued on the device first (it
// cannot know which stream wrote its buffers) and returns when its own
// transfer is complete.
#pragma once

#include <memory>
#include <string>

#include "tessera/communicator.hpp"

namespace tessera {

class NcclCommunicator final : public Communicator {
 public:
  // `bootstrap` must span the same ranks (MPI_COMM_WORLD) and outlive this
  // communicator. `device` is this rank's GPU, the backend's.
  NcclCommunicator(Communicator& bootstrap, int device);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return bootstrap_.rank(); }
  int size() const override { return bootstrap_.size(); }

 private:
  void do_sum(std::span<double> values) override { bootstrap_.sum(values); }
  void do_sum(std::span<float> values) override { bootstrap_.sum(values); }
  double do_max(double value) override { return bootstrap_.max(value); }
  std::unique_ptr<PendingExchange> do_begin_exchange(const std::vector<Transfer>& sends,
                                                     const std::vector<Transfer>& receives) override {
    return bootstrap_.begin_exchange(sends, receives);
  }
  void do_gather_to_root(std::span<const float> local, std::vector<float>& gathered) override {
    bootstrap_.gather_to_root(local, gathered);
  }
  void do_broadcast(std::vector<float>& values) override { bootstrap_.broadcast(values); }
  void do_sum(Backend& backend, DoubleBuffer& values) override;
  std::unique_ptr<PendingExchange> do_begin_exchange(Backend& backend, const std::vector<BufferTransfer>& sends,
                                                     const std::vector<BufferTransfer>& receives) override;

  struct State;
  Communicator& bootstrap_;
  std::unique_ptr<State> state_;
};

}  // namespace tessera
