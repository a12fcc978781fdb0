// The communicator over MPI (Open MPI): host buffers, MPI_COMM_WORLD.
#pragma once

#include <memory>

#include "tessera/communicator.hpp"

namespace tessera {

// True when this process was started by mpirun/srun (MPI's launch
// variables are set), so that a plain `tessera render` never starts MPI.
bool launched_by_mpi();

class MpiCommunicator final : public Communicator {
 public:
  // Initialises MPI (errors are returned, not fatal, and become
  // tessera::Error); finalises it on destruction.
  MpiCommunicator(int* argc, char*** argv);
  ~MpiCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  // Ends every rank of the job: for a rank that failed, so that the others
  // never wait for it in a collective.
  [[noreturn]] static void abort_job(int exit_code);

 private:
  void do_sum(std::span<double> values) override;
  void do_sum(std::span<float> values) override;
  double do_max(double value) override;
  std::unique_ptr<PendingExchange> do_begin_exchange(const std::vector<Transfer>& sends,
                                                     const std::vector<Transfer>& receives) override;
  void do_gather_to_root(std::span<const float> local, std::vector<float>& gathered) override;
  void do_broadcast(std::vector<float>& values) override;
  int rank_ = 0;
  int size_ = 1;
};

}  // namespace tessera
