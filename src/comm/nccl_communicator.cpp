#include "comm/nccl_communicator.hpp"

#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "backends/cuda/cuda_status.hpp"
#include "tessera/checked_call.hpp"
#include "tessera/error.hpp"

namespace tessera {
namespace {

struct Nccl {
  static constexpr const char* name = "NCCL";
  static bool ok(ncclResult_t status) { return status == ncclSuccess; }
  static std::string describe(ncclResult_t status) {
    return std::string(ncclGetErrorString(status)) + " (" + ncclGetLastError(nullptr) + ")";
  }
};

}  // namespace

#define TESSERA_NCCL_CHECK(call) TESSERA_CHECK(Nccl, call)

struct NcclCommunicator::State {
  int device = 0;
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  // Small device scratch for max() and the sizes of gather_to_root().
  double* scalar = nullptr;
  int* counts = nullptr;
  // Grown to the largest broadcast or gather, then kept.
  float* staging = nullptr;
  std::size_t staging_floats = 0;

  float* staging_for(std::size_t floats) {
    if (floats > staging_floats) {
      if (staging) TESSERA_CUDA_CHECK(cudaFree(staging));
      staging = nullptr;
      staging_floats = 0;
      TESSERA_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&staging), floats * sizeof(float)));
      staging_floats = floats;
    }
    return staging;
  }
  // Buffers come from other streams (the backend's): wait for them all.
  void before() { TESSERA_CUDA_CHECK(cudaDeviceSynchronize()); }
  void after() { TESSERA_CUDA_CHECK(cudaStreamSynchronize(stream)); }
};

NcclCommunicator::NcclCommunicator(Communicator& bootstrap, int device)
    : state_(std::make_unique<State>()), rank_(bootstrap.rank()), size_(bootstrap.size()) {
  State& s = *state_;
  s.device = device;
  TESSERA_CUDA_CHECK(cudaSetDevice(device));
  // NCCL's unique id travels byte by byte as floats (each holds a byte
  // exactly) through the bootstrap communicator's broadcast.
  ncclUniqueId id{};
  if (rank_ == 0) TESSERA_NCCL_CHECK(ncclGetUniqueId(&id));
  std::vector<float> bytes(sizeof(id.internal));
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = float(static_cast<unsigned char>(id.internal[i]));
  bootstrap.broadcast(bytes);
  if (bytes.size() != sizeof(id.internal)) fail("internal: NCCL's id arrived with ", bytes.size(), " bytes");
  for (std::size_t i = 0; i < bytes.size(); ++i) id.internal[i] = static_cast<char>(static_cast<unsigned char>(bytes[i]));
  TESSERA_NCCL_CHECK(ncclCommInitRank(&s.comm, size_, id, rank_));
  TESSERA_CUDA_CHECK(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking));
  TESSERA_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&s.scalar), sizeof(double)));
  TESSERA_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&s.counts), sizeof(int) * size_));
}

NcclCommunicator::~NcclCommunicator() {
  // Teardown cannot report failures; each release is attempted once.
  State& s = *state_;
  if (s.stream) (void)cudaStreamSynchronize(s.stream);
  if (s.comm) (void)ncclCommDestroy(s.comm);
  if (s.staging) (void)cudaFree(s.staging);
  if (s.scalar) (void)cudaFree(s.scalar);
  if (s.counts) (void)cudaFree(s.counts);
  if (s.stream) (void)cudaStreamDestroy(s.stream);
}

void NcclCommunicator::do_sum(std::span<double> values) {
  if (values.empty()) return;
  State& s = *state_;
  s.before();
  TESSERA_NCCL_CHECK(
      ncclAllReduce(values.data(), values.data(), values.size(), ncclDouble, ncclSum, s.comm, s.stream));
  s.after();
}

void NcclCommunicator::do_sum(std::span<float> values) {
  if (values.empty()) return;
  State& s = *state_;
  s.before();
  TESSERA_NCCL_CHECK(ncclAllReduce(values.data(), values.data(), values.size(), ncclFloat, ncclSum, s.comm, s.stream));
  s.after();
}

double NcclCommunicator::do_max(double value) {
  State& s = *state_;
  s.before();
  TESSERA_CUDA_CHECK(cudaMemcpyAsync(s.scalar, &value, sizeof(double), cudaMemcpyHostToDevice, s.stream));
  TESSERA_NCCL_CHECK(ncclAllReduce(s.scalar, s.scalar, 1, ncclDouble, ncclMax, s.comm, s.stream));
  TESSERA_CUDA_CHECK(cudaMemcpyAsync(&value, s.scalar, sizeof(double), cudaMemcpyDeviceToHost, s.stream));
  s.after();
  return value;
}

std::unique_ptr<PendingExchange> NcclCommunicator::do_begin_exchange(const std::vector<Transfer>& sends,
                                                                  const std::vector<Transfer>& receives) {
  // The transfers are queued on the communicator's stream; finishing waits
  // for that stream.
  class NcclExchange final : public PendingExchange {
   public:
    explicit NcclExchange(State& state) : state_(state) {}
    ~NcclExchange() override {
      if (!finished_) (void)cudaStreamSynchronize(state_.stream);
    }
    void finish() override {
      finished_ = true;
      state_.after();
    }

   private:
    State& state_;
    bool finished_ = false;
  };
  State& s = *state_;
  s.before();
  auto pending = std::make_unique<NcclExchange>(s);
  // One group: NCCL matches each send with its peer's receive whatever the
  // order, as MPI's posted receives do.
  TESSERA_NCCL_CHECK(ncclGroupStart());
  for (const auto& r : receives)
    TESSERA_NCCL_CHECK(ncclRecv(r.data.data(), r.data.size(), ncclFloat, r.peer, s.comm, s.stream));
  for (const auto& t : sends)
    TESSERA_NCCL_CHECK(ncclSend(t.data.data(), t.data.size(), ncclFloat, t.peer, s.comm, s.stream));
  TESSERA_NCCL_CHECK(ncclGroupEnd());
  return pending;
}

void NcclCommunicator::do_gather_to_root(std::span<const float> local, std::vector<float>& gathered) {
  State& s = *state_;
  s.before();
  // Every rank's count first (an all-gather of one int each), then rank 0
  // receives each part into its staging buffer, in rank order.
  const int count = int(local.size());
  TESSERA_CUDA_CHECK(cudaMemcpyAsync(s.counts + rank_, &count, sizeof(int), cudaMemcpyHostToDevice, s.stream));
  TESSERA_NCCL_CHECK(ncclAllGather(s.counts + rank_, s.counts, 1, ncclInt32, s.comm, s.stream));
  std::vector<int> counts(size_);
  TESSERA_CUDA_CHECK(
      cudaMemcpyAsync(counts.data(), s.counts, sizeof(int) * size_, cudaMemcpyDeviceToHost, s.stream));
  s.after();
  gathered.clear();
  if (rank_ != 0) {
    if (count > 0) {
      TESSERA_NCCL_CHECK(ncclSend(local.data(), local.size(), ncclFloat, 0, s.comm, s.stream));
      s.after();
    }
    return;
  }
  std::size_t total = 0;
  for (int c : counts) total += std::size_t(c);
  float* staging = s.staging_for(std::max<std::size_t>(total, 1));
  std::size_t offset = 0;
  TESSERA_NCCL_CHECK(ncclGroupStart());
  for (int r = 0; r < size_; ++r) {
    if (counts[r] == 0) continue;
    if (r == 0)
      TESSERA_CUDA_CHECK(cudaMemcpyAsync(staging, local.data(), local.size_bytes(), cudaMemcpyDeviceToDevice, s.stream));
    else
      TESSERA_NCCL_CHECK(ncclRecv(staging + offset, counts[r], ncclFloat, r, s.comm, s.stream));
    offset += std::size_t(counts[r]);
  }
  TESSERA_NCCL_CHECK(ncclGroupEnd());
  gathered.resize(total);
  if (total > 0)
    TESSERA_CUDA_CHECK(
        cudaMemcpyAsync(gathered.data(), staging, total * sizeof(float), cudaMemcpyDeviceToHost, s.stream));
  s.after();
}

void NcclCommunicator::do_broadcast(std::vector<float>& values) {
  State& s = *state_;
  s.before();
  // The size first (rank 0's), then the values, both through the device.
  double size = double(values.size());
  TESSERA_CUDA_CHECK(cudaMemcpyAsync(s.scalar, &size, sizeof(double), cudaMemcpyHostToDevice, s.stream));
  TESSERA_NCCL_CHECK(ncclBroadcast(s.scalar, s.scalar, 1, ncclDouble, 0, s.comm, s.stream));
  TESSERA_CUDA_CHECK(cudaMemcpyAsync(&size, s.scalar, sizeof(double), cudaMemcpyDeviceToHost, s.stream));
  s.after();
  values.resize(std::size_t(size));
  if (values.empty()) return;
  float* staging = s.staging_for(values.size());
  TESSERA_CUDA_CHECK(
      cudaMemcpyAsync(staging, values.data(), values.size() * sizeof(float), cudaMemcpyHostToDevice, s.stream));
  TESSERA_NCCL_CHECK(ncclBroadcast(staging, staging, values.size(), ncclFloat, 0, s.comm, s.stream));
  TESSERA_CUDA_CHECK(
      cudaMemcpyAsync(values.data(), staging, values.size() * sizeof(float), cudaMemcpyDeviceToHost, s.stream));
  s.after();
}

int nccl_device_for_local_rank(int local_ranks_on_node, std::string& why_not) {
  int devices = 0;
  cudaError_t status = cudaGetDeviceCount(&devices);
  if (status != cudaSuccess) {
    (void)cudaGetLastError();  // not sticky; "no GPU" is an answer here, not an error
    why_not = std::string("no usable CUDA GPU (") + cudaGetErrorName(status) + ")";
    return -1;
  }
  if (devices == 0) {
    why_not = "no CUDA GPU";
    return -1;
  }
  int local_rank = 0;
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID", "MV2_COMM_WORLD_LOCAL_RANK"})
    if (const char* value = std::getenv(name)) {
      local_rank = std::max(0, std::atoi(value));
      break;
    }
  if (local_ranks_on_node > devices) {
    why_not = std::to_string(local_ranks_on_node) + " ranks on this node share " + std::to_string(devices) +
              " GPU(s); NCCL needs one GPU per rank, so the MPI path is used";
    return -1;
  }
  return local_rank % devices;
}

}  // namespace tessera
