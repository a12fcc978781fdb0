// Run under mpirun: the same render on N ranks (one tile each, and two
// tiles each) against the whole-image render that rank 0 also does alone.
#include <gtest/gtest.h>

#include <cmath>

#include "comm/mpi_communicator.hpp"
#include "support/golden.hpp"
#include "support/test_support.hpp"
#include "tessera/backend.hpp"
#include "tessera/render.hpp"

namespace tessera {
namespace {

MpiCommunicator* g_world = nullptr;

Image random_rgb(int width, int height, std::uint64_t seed) {
  Image image(width, height);
  image.pixels = testing::uniform_vector(seed, image.pixels.size(), 0.0f, 1.0f);
  return image;
}

struct Case {
  std::string model;
  int convs;
  std::vector<std::string> content, style;
  int width, height;
  float style_weight;
};

// As in tests/unit/test_tiling.cpp (where the settings are explained).
const Case kVgg{"vgg19", 3, {"relu2_1"}, {"relu1_1", "relu2_1"}, 71, 53, 10.0f};
const Case kNin{"nin", 4, {"relu3"}, {"relu0", "relu3"}, 151, 133, 10.0f};

Image render(const Case& c, Communicator& communicator, const std::string& optimizer, int rows, int columns) {
  WeightSet weights = testing::synthetic_weights(c.model, c.convs);
  auto backend = make_backend("cpu");
  RenderSettings settings;
  settings.model = c.model;
  settings.objective.content_layers = c.content;
  settings.objective.style_layers = c.style;
  settings.objective.style_weight = c.style_weight;
  settings.optimizer = optimizer;
  settings.learning_rate = 0.02f;
  settings.iterations = 4;
  settings.init = InitKind::content;
  settings.tile_rows = rows;
  settings.tile_columns = columns;
  RenderInputs inputs;
  inputs.weights = &weights;
  inputs.content = random_rgb(c.width, c.height, 71);
  inputs.styles.push_back(random_rgb(c.width - 9, c.height + 5, 72));
  Renderer renderer(*backend, communicator, settings, std::move(inputs));
  EXPECT_EQ(renderer.run(nullptr), 4) << renderer.stop_reason();
  return renderer.image();
}

class MpiRender : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {};

TEST_P(MpiRender, SameImageAsOneRank) {
  auto [model, optimizer] = GetParam();
  const Case& c = model == "nin" ? kNin : kVgg;
  const int ranks = g_world->size();
  Image whole;
  if (g_world->rank() == 0) {
    SingleProcess alone;
    whole = render(c, alone, optimizer, 1, 1);
  }
  // One tile per rank, then two tiles per rank (some ranks out of core).
  for (auto [rows, columns] : {std::pair{1, ranks}, std::pair{2, ranks}}) {
    Image tiled = render(c, *g_world, optimizer, rows, columns);
    if (g_world->rank() != 0) {
      EXPECT_TRUE(tiled.pixels.empty());
      continue;
    }
    ASSERT_EQ(tiled.pixels.size(), whole.pixels.size());
    double worst = 0.0;
    for (std::size_t i = 0; i < whole.pixels.size(); ++i)
      worst = std::max(worst, double(std::abs(whole.pixels[i] - tiled.pixels[i])));
    EXPECT_LE(worst, 1e-4) << ranks << " ranks, " << rows << "x" << columns << " tiles";
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
