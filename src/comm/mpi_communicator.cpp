#include "comm/mpi_communicator.hpp"

#include <mpi.h>

#include <climits>
#include <cstdlib>

#include "tessera/checked_call.hpp"
#include "tessera/error.hpp"

namespace tessera {
namespace {

// Every MPI call is checked (with MPI_ERRORS_RETURN set, a failure returns).
struct Mpi {
  static constexpr const char* name = "MPI";
  static bool ok(int status) { return status == MPI_SUCCESS; }
  static std::string describe(int status) {
    char message[MPI_MAX_ERROR_STRING] = {};
    int length = 0;
    if (MPI_Error_string(status, message, &length) != MPI_SUCCESS) return "error " + std::to_string(status);
    return std::string(message, std::size_t(length));
  }
};

#define TESSERA_MPI(call) TESSERA_CHECK(Mpi, call)

int count_of(std::size_t n) {
  if (n > std::size_t(INT_MAX)) fail("internal: an MPI message of ", n, " elements is too large");
  return int(n);
}

}  // namespace

bool launched_by_mpi() {
  for (const char* variable : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK"})
    if (std::getenv(variable)) return true;
  return false;
}

MpiCommunicator::MpiCommunicator(int* argc, char*** argv) {
  int initialised = 0;
  TESSERA_MPI(MPI_Initialized(&initialised));
  if (!initialised) {
    int provided = 0;
    TESSERA_MPI(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
  }
  TESSERA_MPI(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  TESSERA_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &rank_));
  TESSERA_MPI(MPI_Comm_size(MPI_COMM_WORLD, &size_));
}

MpiCommunicator::~MpiCommunicator() {
  int finalised = 0;
  MPI_Finalized(&finalised);
  if (!finalised) MPI_Finalize();
}

void MpiCommunicator::do_sum(std::span<double> values) {
  TESSERA_MPI(MPI_Allreduce(MPI_IN_PLACE, values.data(), count_of(values.size()), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
}

void MpiCommunicator::do_sum(std::span<float> values) {
  TESSERA_MPI(MPI_Allreduce(MPI_IN_PLACE, values.data(), count_of(values.size()), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD));
}

double MpiCommunicator::do_max(double value) {
  TESSERA_MPI(MPI_Allreduce(MPI_IN_PLACE, &value, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
  return value;
}

namespace {

class MpiExchange final : public PendingExchange {
 public:
  explicit MpiExchange(std::size_t count) : requests_(count, MPI_REQUEST_NULL) {}
  ~MpiExchange() override {
    // Unfinished only when an error is on its way up: wait without a second
    // error, so that no message lands in a buffer already freed.
    if (!finished_) (void)MPI_Waitall(int(requests_.size()), requests_.data(), MPI_STATUSES_IGNORE);
  }
  MPI_Request* request(std::size_t i) { return &requests_[i]; }
  void finish() override {
    finished_ = true;
    TESSERA_MPI(MPI_Waitall(int(requests_.size()), requests_.data(), MPI_STATUSES_IGNORE));
  }

 private:
  std::vector<MPI_Request> requests_;
  bool finished_ = false;
};

}  // namespace

std::unique_ptr<PendingExchange> MpiCommunicator::do_begin_exchange(const std::vector<Transfer>& sends,
                                                                 const std::vector<Transfer>& receives) {
  constexpr int kHaloTag = 7001;
  auto pending = std::make_unique<MpiExchange>(sends.size() + receives.size());
  std::size_t r = 0;
  for (const auto& receive : receives)
    TESSERA_MPI(MPI_Irecv(receive.data.data(), count_of(receive.data.size()), MPI_FLOAT, receive.peer, kHaloTag,
                          MPI_COMM_WORLD, pending->request(r++)));
  for (const auto& send : sends)
    TESSERA_MPI(MPI_Isend(send.data.data(), count_of(send.data.size()), MPI_FLOAT, send.peer, kHaloTag,
                          MPI_COMM_WORLD, pending->request(r++)));
  return pending;
}

void MpiCommunicator::do_gather_to_root(std::span<const float> local, std::vector<float>& gathered) {
  int count = count_of(local.size());
  std::vector<int> counts(rank_ == 0 ? size_ : 0), offsets(rank_ == 0 ? size_ : 0);
  TESSERA_MPI(MPI_Gather(&count, 1, MPI_INT, counts.data(), 1, MPI_INT, 0, MPI_COMM_WORLD));
  gathered.clear();
  if (rank_ == 0) {
    std::size_t total = 0;
    for (int i = 0; i < size_; ++i) {
      offsets[i] = count_of(total);
      total += std::size_t(counts[i]);
    }
    gathered.resize(total);
  }
  TESSERA_MPI(MPI_Gatherv(local.data(), count, MPI_FLOAT, gathered.data(), counts.data(), offsets.data(), MPI_FLOAT,
                          0, MPI_COMM_WORLD));
}

void MpiCommunicator::do_broadcast(std::vector<float>& values) {
  unsigned long long size = values.size();
  TESSERA_MPI(MPI_Bcast(&size, 1, MPI_UNSIGNED_LONG_LONG, 0, MPI_COMM_WORLD));
  values.resize(size);
  TESSERA_MPI(MPI_Bcast(values.data(), count_of(size), MPI_FLOAT, 0, MPI_COMM_WORLD));
}

void MpiCommunicator::abort_job(int exit_code) {
  MPI_Abort(MPI_COMM_WORLD, exit_code);
  std::_Exit(exit_code);
}

}  // namespace tessera
