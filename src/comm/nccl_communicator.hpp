// The communicator over NCCL, for buffers in GPU memory: one GPU per rank,
// bootstrapped over another communicator (MPI) that carries NCCL's unique id
// from rank 0 to the others.
//
// Unlike the MPI communicator, every span given to sum() and exchange() and
// the `local` of gather_to_root() is device memory of this rank's GPU;
// max(), broadcast() and gather_to_root()'s `gathered` are host values, as
// the interface has them. Each call waits for all work already queued on the
// device first (it cannot know which stream wrote its buffers) and returns
// when its own transfer is complete.
#pragma once

#include <memory>
#include <string>

#include "tessera/communicator.hpp"

namespace tessera {

class NcclCommunicator final : public Communicator {
 public:
  // `bootstrap` must span the same ranks (MPI_COMM_WORLD); it is used only
  // here. `device` is this rank's GPU (see nccl_device_for_local_rank).
  NcclCommunicator(Communicator& bootstrap, int device);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }

 private:
  void do_sum(std::span<double> values) override;
  void do_sum(std::span<float> values) override;
  double do_max(double value) override;
  std::unique_ptr<PendingExchange> do_begin_exchange(const std::vector<Transfer>& sends,
                                                     const std::vector<Transfer>& receives) override;
  void do_gather_to_root(std::span<const float> local, std::vector<float>& gathered) override;
  void do_broadcast(std::vector<float>& values) override;
  struct State;
  std::unique_ptr<State> state_;
  int rank_ = 0;
  int size_ = 1;
};

// The GPU for a rank: its node-local rank (OMPI_COMM_WORLD_LOCAL_RANK,
// SLURM_LOCALID) among the node's GPUs. Returns -1, with the reason in
// `why_not`, when there is no GPU or when ranks would share one: NCCL needs
// a GPU per rank, and such a job should stay on the MPI path (with a
// warning that says so).
int nccl_device_for_local_rank(int local_ranks_on_node, std::string& why_not);

}  // namespace tessera
