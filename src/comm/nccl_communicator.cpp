#include "comm/nccl_communicator.hpp"

#include <unistd.h>

#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "backends/cuda/cuda_status.hpp"
#include "comm/device_communicator.hpp"
#include "tessera/backend.hpp"
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

  // Buffers come from other streams (the backend's): wait for them all.
  void before() { TESSERA_CUDA_CHECK(cudaDeviceSynchronize()); }
  void after() { TESSERA_CUDA_CHECK(cudaStreamSynchronize(stream)); }
};

NcclCommunicator::NcclCommunicator(Communicator& bootstrap, int device)
    : bootstrap_(bootstrap), state_(std::make_unique<State>()) {
  State& s = *state_;
  s.device = device;
  TESSERA_CUDA_CHECK(cudaSetDevice(device));
  // NCCL's unique id travels byte by byte as floats (each holds a byte
  // exactly) through the bootstrap communicator's broadcast.
  ncclUniqueId id{};
  if (rank() == 0) TESSERA_NCCL_CHECK(ncclGetUniqueId(&id));
  std::vector<float> bytes(sizeof(id.internal));
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = float(static_cast<unsigned char>(id.internal[i]));
  bootstrap.broadcast(bytes);
  if (bytes.size() != sizeof(id.internal)) fail("internal: NCCL's id arrived with ", bytes.size(), " bytes");
  for (std::size_t i = 0; i < bytes.size(); ++i) id.internal[i] = static_cast<char>(static_cast<unsigned char>(bytes[i]));
  TESSERA_NCCL_CHECK(ncclCommInitRank(&s.comm, size(), id, rank()));
  TESSERA_CUDA_CHECK(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking));
}

NcclCommunicator::~NcclCommunicator() {
  // Teardown cannot report failures; each release is attempted once.
  State& s = *state_;
  if (s.stream) (void)cudaStreamSynchronize(s.stream);
  if (s.comm) (void)ncclCommDestroy(s.comm);
  if (s.stream) (void)cudaStreamDestroy(s.stream);
}

void NcclCommunicator::do_sum(Backend& backend, DoubleBuffer& values) {
  if (backend.host_memory()) {
    sum_through_host(backend, values);
    return;
  }
  if (values.size() == 0) return;
  State& s = *state_;
  s.before();
  TESSERA_NCCL_CHECK(
      ncclAllReduce(values.data(), values.data(), values.size(), ncclDouble, ncclSum, s.comm, s.stream));
  s.after();
}

std::unique_ptr<PendingExchange> NcclCommunicator::do_begin_exchange(Backend& backend,
                                                                  const std::vector<BufferTransfer>& sends,
                                                                  const std::vector<BufferTransfer>& receives) {
  if (backend.host_memory()) return exchange_through_host(backend, sends, receives);
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
    TESSERA_NCCL_CHECK(ncclRecv(const_cast<float*>(r.buffer.data()), r.buffer.elements(), ncclFloat, r.peer, s.comm,
                                s.stream));
  for (const auto& t : sends)
    TESSERA_NCCL_CHECK(ncclSend(t.buffer.data(), t.buffer.elements(), ncclFloat, t.peer, s.comm, s.stream));
  TESSERA_NCCL_CHECK(ncclGroupEnd());
  return pending;
}

std::unique_ptr<Communicator> make_device_communicator(Communicator& world, Backend& backend, std::string& why_not) {
  why_not.clear();
  if (world.size() == 1 || backend.host_memory()) return nullptr;
  // The backend chose this rank's GPU (and made it current); NCCL needs a
  // GPU per rank, whether Slurm gave each rank one (CUDA_VISIBLE_DEVICES)
  // or the node-local rank chose among all of them. Every rank agrees.
  int device = 0;
  TESSERA_CUDA_CHECK(cudaGetDevice(&device));
  char bus[32] = {};
  TESSERA_CUDA_CHECK(cudaDeviceGetPCIBusId(bus, sizeof bus, device));
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0) fail("gethostname failed: ", std::strerror(errno));
  const std::string shared = shared_device(world, std::string("GPU ") + bus + " on " + host);
  if (!shared.empty()) {
    why_not = shared + ": NCCL needs one GPU per rank, so sums and halos go through MPI, by way of host memory";
    return nullptr;
  }
  return std::make_unique<NcclCommunicator>(world, device);
}

}  // namespace tessera
