// Run under mpirun: the same render on N ranks (one tile each, and two
// tiles each) against the whole-image render that rank 0 also does alone.
#include <gtest/gtest.h>

#include <cmath>

#include "comm/mpi_communicator.hpp"
#include "support/render_cases.hpp"
#include "support/test_support.hpp"
#include "tessera/backend.hpp"
#include "tessera/render.hpp"

namespace tessera {
namespace {

MpiCommunicator* g_world = nullptr;

class MpiRender : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {};

TEST_P(MpiRender, SameImageAsOneRank) {
  auto [model, optimizer] = GetParam();
  const auto& c = model == "nin" ? testing::kNinCase : testing::kVggCase;
  const int ranks = g_world->size();
  Image whole;
  if (g_world->rank() == 0) {
    SingleProcess alone;
    whole = testing::render_case(c, alone, optimizer, 1, 1);
  }
  // One tile per rank, then two tiles per rank (some ranks out of core).
  for (auto [rows, columns] : {std::pair{1, ranks}, std::pair{2, ranks}}) {
    Image tiled = testing::render_case(c, *g_world, optimizer, rows, columns);
    if (g_world->rank() != 0) {
      EXPECT_TRUE(tiled.pixels.empty());
      continue;
    }
    EXPECT_LE(testing::max_difference(tiled, whole), 1e-4) << ranks << " ranks, " << rows << "x" << columns << " tiles";
  }
}

INSTANTIATE_TEST_SUITE_P(Mpi, MpiRender,
                         ::testing::Combine(::testing::Values("vgg19", "nin"), ::testing::Values("lbfgs", "adam")),
                         [](const auto& info) { return std::get<0>(info.param) + "_" + std::get<1>(info.param); });

}  // namespace
}  // namespace tessera

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  tessera::MpiCommunicator world(&argc, &argv);
  tessera::g_world = &world;
  // Only rank 0 prints gtest's report; every rank's failures still fail the run.
  if (world.rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int result = RUN_ALL_TESTS();
  // Any rank's failure fails the job.
  double failed = result != 0 ? 1.0 : 0.0;
  failed = world.max(failed);
  return failed != 0.0 ? 1 : 0;
}
