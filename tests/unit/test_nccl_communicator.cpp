// The NCCL communicator on device buffers, as far as one process with one
// GPU can check it: a one-rank communicator bootstrapped over the trivial
// one, whose sums are the identity and whose exchange with itself copies.
// Several ranks need a GPU each (NCCL refuses two ranks on one device):
// that check waits for a multi-GPU machine (tests/mpi, under mpirun).
// Skips, saying why, without a GPU.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <vector>

#include "comm/nccl_communicator.hpp"
#include "support/test_support.hpp"
#include "tessera/error.hpp"

namespace tessera {
namespace {

// Device memory holding `values`, freed at the end of the test.
struct DeviceFloats {
  float* data = nullptr;
  std::size_t count = 0;
  explicit DeviceFloats(const std::vector<float>& values) : count(values.size()) {
    EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&data), count * sizeof(float)), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(data, values.data(), count * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  }
  ~DeviceFloats() { (void)cudaFree(data); }
  std::vector<float> host() const {
    std::vector<float> values(count);
    EXPECT_EQ(cudaMemcpy(values.data(), data, count * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
    return values;
  }
  std::span<float> span() { return {data, count}; }
};

TEST(NcclCommunicator, OneRankOnOneGpu) {
  std::string why_not;
  int device = nccl_device_for_local_rank(1, why_not);
  if (device < 0) GTEST_SKIP() << "no GPU for NCCL here: " << why_not;
  SingleProcess bootstrap;
  NcclCommunicator nccl(bootstrap, device);
  EXPECT_EQ(nccl.rank(), 0);
  EXPECT_EQ(nccl.size(), 1);

  auto values = testing::uniform_vector(5, 1000, -1.0f, 1.0f);
  DeviceFloats sums(values);
  nccl.sum(sums.span());
  EXPECT_EQ(sums.host(), values);
  EXPECT_EQ(nccl.max(3.5), 3.5);

  DeviceFloats to_self(std::vector<float>(values.size(), 0.0f));
  nccl.exchange({{0, sums.span()}}, {{0, to_self.span()}});
  EXPECT_EQ(to_self.host(), values);

  std::vector<float> gathered;
  nccl.gather_to_root(std::span<const float>(sums.data, sums.count), gathered);
  EXPECT_EQ(gathered, values);

  std::vector<float> broadcast = {1.0f, 2.0f, 3.0f};
  nccl.broadcast(broadcast);
  EXPECT_EQ(broadcast, (std::vector<float>{1.0f, 2.0f, 3.0f}));
}

TEST(NcclCommunicator, RanksSharingAGpuStayOnMpi) {
  std::string why_not;
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    (void)cudaGetLastError();
    EXPECT_EQ(nccl_device_for_local_rank(2, why_not), -1);
    GTEST_SKIP() << "no GPU here: " << why_not;
  }
  EXPECT_EQ(nccl_device_for_local_rank(devices + 1, why_not), -1);
  EXPECT_NE(why_not.find("share"), std::string::npos) << why_not;
}

}  // namespace
}  // namespace tessera
