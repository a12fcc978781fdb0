// Run under mpirun: the same render on N ranks (one tile each, and two
// tiles each) against the whole-image render that rank 0 also does alone.
#include <gtest/gtest.h>

#include <cmath>

#include "comm/mpi_communicator.hpp"
#include "support/render_cases.hpp"
#include "support/staged_backend.hpp"
#include "support/test_support.hpp"
#include "tessera/backend.hpp"
#include "tessera/box_copy.hpp"
#include "tessera/halo_plan.hpp"
#include "tessera/tiled_image.hpp"
#include "tessera/model.hpp"
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

// The history of inner products (one reduction an iteration) shadowed by
// the two-loop recursion over the vectors (a reduction per dot product) on
// every rank of the job, one tile each: the same directions on every rank
// count, and the same image as one rank's.
TEST(MpiLbfgs, InnerProductsFindTheTwoLoopDirectionsOnEveryRank) {
  auto backend = make_backend("cpu");
  constexpr int kIterations = 30;
  const int ranks = g_world->size();
  auto record = std::make_shared<testing::TandemRecord>();
  auto renderer = testing::case_renderer(testing::kVggCase, *backend, *g_world, "lbfgs", 1, ranks, -1, kIterations,
                                         100, LineSearch::strong_wolfe, testing::tandem_history(record));
  ASSERT_EQ(renderer->run(nullptr), kIterations) << renderer->stop_reason();
  EXPECT_GE(record->directions, kIterations);
  EXPECT_LE(record->worst_direction, 1e-5) << ranks << " ranks";
  EXPECT_LE(record->worst_slope, 1e-5) << ranks << " ranks";
  EXPECT_LE(record->worst_move, 1e-5) << ranks << " ranks";
  Image tiled = renderer->image();
  if (g_world->rank() != 0) return;
  SingleProcess alone;
  auto whole = testing::case_renderer(testing::kVggCase, *backend, alone, "lbfgs", 1, 1, -1, kIterations);
  ASSERT_EQ(whole->run(nullptr), kIterations) << whole->stop_reason();
  EXPECT_LE(testing::max_difference(tiled, whole->image()), 1e-4) << ranks << " ranks against 1";
}

// Pixels moved from one layout to another that overlaps it unevenly (the
// windows of the next scale's tiles): every rank gets exactly the values of
// its boxes, whichever ranks held them.
TEST(MpiBoxCopy, MovesPixelsBetweenLayouts) {
  const int width = 53, height = 41, ranks = g_world->size();
  auto value = [](int c, int y, int x) { return float(c * 100000 + y * 100 + x); };
  auto grid = [](int w, int h, int rows, int columns, int grow) {
    std::vector<Box> boxes;
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < columns; ++c)
        boxes.push_back(Box{w * c / columns, h * r / rows, w * (c + 1) / columns, h * (r + 1) / rows}
                            .grow(grow)
                            .intersect(Box{0, 0, w, h}));
    return boxes;
  };
  const std::vector<Box> from = grid(width, height, 2, ranks, 0);
  const RankMap from_owners = RankMap::contiguous(int(from.size()), ranks);
  const std::vector<Box> to = grid(width, height, 3, 3, 4);
  const RankMap to_owners = RankMap::contiguous(int(to.size()), ranks);
  auto values_of = [&](const std::vector<Box>& boxes, const RankMap& owners) {
    std::vector<float> values;
    for (std::size_t b = 0; b < boxes.size(); ++b) {
      if (owners.rank_of(int(b)) != g_world->rank()) continue;
      for (int c = 0; c < 3; ++c)
        for (int y = boxes[b].y0; y < boxes[b].y1; ++y)
          for (int x = boxes[b].x0; x < boxes[b].x1; ++x) values.push_back(value(c, y, x));
    }
    return values;
  };
  const std::vector<float> local = values_of(from, from_owners);
  std::vector<float> moved = copy_boxes(*g_world, 3, from, from_owners, local, to, to_owners);
  EXPECT_EQ(moved, values_of(to, to_owners)) << "rank " << g_world->rank();
}

// The halo plan under mpirun: every grown image of every rank's tiles holds
// the image's pixels over its whole box once finish() returns, the copies
// between a rank's own tiles already after begin().
class MpiHaloPlan : public ::testing::TestWithParam<bool> {};

TEST_P(MpiHaloPlan, FillsEveryGrownImageFromItsOwners) {
  const int width = 70, height = 52, ranks = g_world->size();
  auto value = [](int c, int y, int x) { return float(c * 100000 + y * 100 + x); };
  const Architecture& arch = architecture("vgg19");
  TileGrid grid = TileGrid::for_layers(arch, {"relu1_1", "relu2_1"}, width, height, 2, ranks, -1);
  RankMap owners = RankMap::contiguous(int(grid.tiles.size()), ranks);
  // On the CPU backend's memory, and staged through the host as a GPU's.
  auto backend = GetParam() ? testing::staged_backend(make_backend("cpu")) : make_backend("cpu");
  std::vector<float> local;
  std::vector<Tensor> grown;
  for (const Tile& tile : grid.tiles) {
    if (owners.rank_of(tile.index) != g_world->rank()) continue;
    for (int c = 0; c < 3; ++c)
      for (int y = tile.owned.y0; y < tile.owned.y1; ++y)
        for (int x = tile.owned.x0; x < tile.owned.x1; ++x) local.push_back(value(c, y, x));
    grown.push_back(backend->allocate({3, tile.grown.height(), tile.grown.width()}, Layout::planar));
    backend->fill(grown.back(), -1.0f);
  }
  Tensor image = backend->allocate({int(local.size()), 1, 1}, Layout::planar);
  backend->upload(local, image);
  const TiledImage tiled(grid, owners, g_world->rank());
  HaloPlan plan(*backend, *g_world, tiled);
  plan.begin(image, [&](int i) -> Tensor& { return grown[i]; });
  plan.finish();
  int i = 0, wrong = 0;
  for (const Tile& tile : grid.tiles) {
    if (owners.rank_of(tile.index) != g_world->rank()) continue;
    std::vector<float> values(grown[i].elements());
    backend->download(grown[i++], values);
    std::size_t k = 0;
    for (int c = 0; c < 3; ++c)
      for (int y = tile.grown.y0; y < tile.grown.y1; ++y)
        for (int x = tile.grown.x0; x < tile.grown.x1; ++x) wrong += values[k++] != value(c, y, x);
  }
  EXPECT_EQ(wrong, 0) << "rank " << g_world->rank();
  // A second begin before finish is a mistake, not a silent overwrite.
  plan.begin(image, [&](int j) -> Tensor& { return grown[j]; });
  EXPECT_THROW(plan.begin(image, [&](int j) -> Tensor& { return grown[j]; }), Error);
  plan.finish();
}

INSTANTIATE_TEST_SUITE_P(Mpi, MpiHaloPlan, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "staged" : "host"; });

// The statistics' double buffer summed across ranks in one collective, in
// the CPU backend's memory and staged through the host.
TEST(MpiSums, DoubleBufferOnEveryRank) {
  const int ranks = g_world->size(), me = g_world->rank();
  for (bool staged : {false, true}) {
    auto backend = staged ? testing::staged_backend(make_backend("cpu")) : make_backend("cpu");
    std::vector<double> values(257), expected(257, 0.0);
    for (std::size_t i = 0; i < values.size(); ++i) {
      values[i] = 0.25 * double(i) + 1e-3 * me;
      for (int r = 0; r < ranks; ++r) expected[i] += 0.25 * double(i) + 1e-3 * r;
    }
    DoubleBuffer sums = backend->allocate_doubles(values.size());
    backend->write_doubles(values, sums, 0);
    const CommunicationCounts before = g_world->counts();
    g_world->sum(*backend, sums);
    const CommunicationCounts moved = g_world->counts().since(before);
    EXPECT_EQ(moved.collectives, 1);
    EXPECT_EQ(moved.collective_bytes, static_cast<long long>(values.size() * sizeof(double)));
    std::vector<double> summed(values.size());
    backend->read_doubles(sums, 0, summed);
    for (std::size_t i = 0; i < values.size(); ++i)
      EXPECT_NEAR(summed[i], expected[i], 1e-12) << "element " << i << (staged ? ", staged" : "");
  }
}

// A render whose backend's memory is not the host's takes the staged path
// (download, MPI, upload) and draws the same image, bit for bit.
TEST(MpiRender, StagedThroughTheHostSameImage) {
  const int ranks = g_world->size();
  auto plain = make_backend("cpu");
  auto staged = testing::staged_backend(make_backend("cpu"));
  auto a = testing::case_renderer(testing::kVggCase, *plain, *g_world, "lbfgs", 1, ranks);
  auto b = testing::case_renderer(testing::kVggCase, *staged, *g_world, "lbfgs", 1, ranks);
  ASSERT_EQ(a->run(nullptr), 6) << a->stop_reason();
  ASSERT_EQ(b->run(nullptr), 6) << b->stop_reason();
  Image on_host = a->image(), through_host = b->image();
  if (g_world->rank() != 0) return;
  EXPECT_EQ(testing::max_difference(on_host, through_host), 0.0);
}

// The image in strips (what the render job writes, so that rank 0 never
// holds it whole) is the gathered image, row for row, on two tiles a rank.
TEST(MpiRender, StripsAssembleTheGatheredImage) {
  const int ranks = g_world->size();
  auto backend = make_backend("cpu");
  auto renderer = testing::case_renderer(testing::kVggCase, *backend, *g_world, "adam", 2, ranks, -1, 2);
  ASSERT_EQ(renderer->run(nullptr), 2) << renderer->stop_reason();
  const Image whole = renderer->image();
  Image assembled(renderer->width(), renderer->height());
  int next_row = 0, strips = 0;
  renderer->image_strips(7, [&](const Image& strip) {
    ASSERT_EQ(strip.width, assembled.width);
    ASSERT_LE(strip.height, 7);
    for (int c = 0; c < 3; ++c)
      std::copy_n(strip.pixels.begin() + c * strip.plane_size(), strip.plane_size(),
                  assembled.pixels.begin() + c * assembled.plane_size() + std::size_t(next_row) * assembled.width);
    next_row += strip.height;
    ++strips;
  });
  if (g_world->rank() != 0) {
    EXPECT_EQ(strips, 0);
    return;
  }
  EXPECT_EQ(next_row, assembled.height);
  EXPECT_EQ(strips, (assembled.height + 6) / 7);
  EXPECT_EQ(assembled.pixels, whole.pixels);
}

// Every rank learns whether two ranks name the same device.
TEST(MpiSharedDevice, NamesTheFirstPairThatShares) {
  const int ranks = g_world->size(), me = g_world->rank();
  EXPECT_EQ(shared_device(*g_world, "GPU " + std::to_string(me) + " on node"), "");
  const std::string shared = shared_device(*g_world, "GPU " + std::to_string(me / 2) + " on node");
  if (ranks >= 2) {
    EXPECT_EQ(shared, "ranks 0 and 1 share GPU 0 on node") << "rank " << me;
  }
  // Names of different lengths on different ranks.
  EXPECT_EQ(shared_device(*g_world, std::string(std::size_t(me + 1), 'x')), "");
}

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
