// The NCCL communicator on the CUDA backend's buffers, as far as one process
// with one GPU can check it: a one-rank communicator bootstrapped over the
// trivial one, whose sums are the identity and whose exchange with itself
// copies. Several ranks need a GPU each (NCCL refuses two ranks on one
// device): that check waits for a multi-GPU machine. Which ranks share a
// device is decided by shared_device(), tested on the CPU under mpirun.
// Skips, saying why, without a GPU.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <vector>

#include "comm/device_communicator.hpp"
#include "comm/nccl_communicator.hpp"
#include "support/test_support.hpp"
#include "tessera/backend.hpp"
#include "tessera/error.hpp"

namespace tessera {
namespace {

// The CUDA backend, or the reason there is none (never an exception).
std::unique_ptr<Backend> cuda_backend(std::string& why_not) {
  try {
    return make_backend("cuda");
  } catch (const Error& e) {
    why_not = e.what();
    return nullptr;
  }
}

TEST(NcclCommunicator, OneRankOnOneGpu) {
  std::string why_none;
  auto backend = cuda_backend(why_none);
  if (!backend) GTEST_SKIP() << "no GPU for NCCL here: " << why_none;
  SingleProcess bootstrap;
  int device = -1;
  ASSERT_EQ(cudaGetDevice(&device), cudaSuccess);
  NcclCommunicator nccl(bootstrap, device);
  EXPECT_EQ(nccl.rank(), 0);
  EXPECT_EQ(nccl.size(), 1);

  // The backend's buffers, reduced and sent where they are.
  std::vector<double> values(1000);
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = 0.001 * double(i) - 0.3;
  DoubleBuffer sums = backend->allocate_doubles(values.size());
  backend->write_doubles(values, sums, 0);
  nccl.sum(*backend, sums);
  std::vector<double> summed(values.size());
  backend->read_doubles(sums, 0, summed);
  EXPECT_EQ(summed, values);
  EXPECT_EQ(nccl.counts().collectives, 1);
  EXPECT_EQ(nccl.counts().collective_bytes, static_cast<long long>(values.size() * sizeof(double)));

  auto floats = testing::uniform_vector(5, 1000, -1.0f, 1.0f);
  Tensor sent = backend->allocate({1, 1, int(floats.size())}, Layout::planar);
  Tensor received = backend->allocate({1, 1, int(floats.size())}, Layout::planar);
  backend->upload(floats, sent);
  nccl.begin_exchange(*backend, {{0, sent}}, {{0, received}})->finish();
  std::vector<float> arrived(floats.size());
  backend->download(received, arrived);
  EXPECT_EQ(arrived, floats);
  EXPECT_EQ(nccl.counts().messages, 1);

  // Host values go through the bootstrap communicator.
  std::vector<double> host = {1.0, 2.0};
  nccl.sum(std::span<double>(host));
  EXPECT_EQ(host, (std::vector<double>{1.0, 2.0}));
  EXPECT_EQ(nccl.max(3.5), 3.5);
  std::vector<float> gathered;
  nccl.gather_to_root(floats, gathered);
  EXPECT_EQ(gathered, floats);
  std::vector<float> broadcast = {1.0f, 2.0f, 3.0f};
  nccl.broadcast(broadcast);
  EXPECT_EQ(broadcast, (std::vector<float>{1.0f, 2.0f, 3.0f}));
}

TEST(NcclCommunicator, OneRankStaysOnItsOwnCommunicator) {
  std::string why_none;
  auto backend = cuda_backend(why_none);
  if (!backend) GTEST_SKIP() << "no GPU here: " << why_none;
  SingleProcess world;
  std::string why_not = "unchanged";
  EXPECT_EQ(make_device_communicator(world, *backend, why_not), nullptr);
  EXPECT_TRUE(why_not.empty()) << why_not;
}

}  // namespace
}  // namespace tessera
