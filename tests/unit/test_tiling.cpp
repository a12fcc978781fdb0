// Tiles with an exact halo: the grid, the halo rule, and the proof that
// matters: a tiled render equals the whole-image render.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "support/golden.hpp"
#include "support/render_cases.hpp"
#include "support/test_support.hpp"
#include "support/whole_objective.hpp"
#include "tessera/backend.hpp"
#include "tessera/box_copy.hpp"
#include "tessera/error.hpp"
#include "tessera/render.hpp"
#include "tessera/tiling.hpp"

namespace tessera {
namespace {

TEST(TileGrid, OwnedBoxesPartitionTheImageOnTheStrideGrid) {
  for (auto [w, h, rows, cols] : {std::tuple{100, 70, 2, 3}, {97, 61, 3, 2}, {64, 64, 4, 4}, {33, 17, 1, 2}}) {
    TileGrid grid = TileGrid::make(w, h, rows, cols, 8, 16, 8);
    ASSERT_EQ(grid.tiles.size(), std::size_t(rows * cols));
    long long area = 0;
    for (const auto& t : grid.tiles) {
      area += t.owned.area();
      if (t.owned.x0 > 0) {
        EXPECT_EQ(t.owned.x0 % 8, 0);
      }
      if (t.owned.y0 > 0) {
        EXPECT_EQ(t.owned.y0 % 8, 0);
      }
      EXPECT_EQ(t.grown, t.owned.grow(16).intersect(grid.image()));
      for (const auto& u : grid.tiles)
        if (u.index != t.index) {
          EXPECT_TRUE(t.owned.intersect(u.owned).empty());
        }
    }
    EXPECT_EQ(area, (long long)w * h);
  }
  EXPECT_THROW(TileGrid::make(20, 20, 1, 3, 8, 16, 8), Error);  // 20 px hold two blocks of 8
  // Blocks cover the image once, and no tile boundary cuts one.
  TileGrid grid = TileGrid::make(100, 70, 2, 3, 4, 8, 12);
  long long area = 0;
  for (const Box& block : grid.blocks()) {
    area += block.area();
    int owners = 0;
    for (const auto& t : grid.tiles) owners += t.owned.contains(block) ? 1 : 0;
    EXPECT_EQ(owners, 1) << block.describe();
  }
  EXPECT_EQ(area, 100LL * 70);
}

TEST(TileGrid, HaloFollowsTheReceptiveFieldTable) {
  const auto& vgg = architecture("vgg19");
  EXPECT_EQ(halo_width_for(vgg, {"relu1_1"}), 3);
  EXPECT_EQ(halo_width_for(vgg, {"relu2_1"}), 10);
  EXPECT_EQ(halo_width_for(vgg, {"relu1_1", "relu2_1", "relu3_1"}), 24);
  EXPECT_EQ(halo_width_for(vgg, {"relu4_2"}), 88);  // 84 up to a multiple of 8
  EXPECT_EQ(halo_width_for(vgg, {"relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1"}), 160);
  EXPECT_EQ(total_stride_for(vgg, {"relu4_2", "relu5_1"}), 16);
  const auto& nin = architecture("nin");
  EXPECT_EQ(halo_width_for(nin, {"relu0"}), 12);
  EXPECT_EQ(halo_width_for(nin, {"relu0", "relu3", "relu7", "relu12"}), 224);  // 195 up to 32
}

TEST(TileGrid, ParsesRowsByColumns) {
  int rows = 0, columns = 0;
  parse_tile_grid("2x3", rows, columns);
  EXPECT_EQ(rows, 2);
  EXPECT_EQ(columns, 3);
  for (const char* bad : {"2", "x3", "0x1", "2x", "axb", "2x3x4"}) EXPECT_THROW(parse_tile_grid(bad, rows, columns), Error);
}

using testing::kNinCase;
using testing::kVggCase;
using testing::max_difference;

class TiledEqualsWhole : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {};

TEST_P(TiledEqualsWhole, SameImageAfterSomeIterations) {
  auto [model, optimizer] = GetParam();
  const auto& c = model == "nin" ? kNinCase : kVggCase;
  SingleProcess single;
  Image whole = testing::render_case(c, single, optimizer, 1, 1);
  // The render must move the image, or equality proves nothing.
  Image start = testing::seeded_rgb(c.width, c.height, 71);
  EXPECT_GT(max_difference(whole, start), 1e-2);
  for (auto [rows, columns] : {std::pair{2, 2}, {3, 2}, {1, 3}, {4, 3}}) {
    SCOPED_TRACE(std::to_string(rows) + "x" + std::to_string(columns) + " tiles");
    EXPECT_LE(max_difference(testing::render_case(c, single, optimizer, rows, columns), whole), 1e-4);
  }
}

INSTANTIATE_TEST_SUITE_P(Tiling, TiledEqualsWhole,
                         ::testing::Combine(::testing::Values("vgg19", "nin"), ::testing::Values("lbfgs", "adam")),
                         [](const auto& info) { return std::get<0>(info.param) + "_" + std::get<1>(info.param); });

// The halo rule is what makes it exact: a smaller halo must break equality.
TEST(TiledEqualsWhole, SmallerHaloThanTheRuleBreaksIt) {
  SingleProcess single;
  Image whole = testing::render_case(kVggCase, single, "lbfgs", 1, 1);
  EXPECT_GT(max_difference(testing::render_case(kVggCase, single, "lbfgs", 2, 2, 2), whole), 1e-3);
  EXPECT_LE(max_difference(testing::render_case(kVggCase, single, "lbfgs", 2, 2, 10), whole), 1e-4);
}

}  // namespace
}  // namespace tessera

namespace tessera {
namespace {

TEST(RankMap, ContiguousRunsAsEvenAsPossible) {
  RankMap map = RankMap::contiguous(10, 4);
  std::vector<int> ranks;
  for (int t = 0; t < map.tile_count(); ++t) ranks.push_back(map.rank_of(t));
  EXPECT_EQ(ranks, (std::vector<int>{0, 0, 0, 1, 1, 2, 2, 2, 3, 3}));
  EXPECT_EQ(map.tiles_of(1), (std::vector<int>{3, 4}));
  EXPECT_EQ(map.rank_count(), 4);
  EXPECT_STREQ(map.strategy_name(), "contiguous");
  // Fewer tiles than ranks (a small style image): the last ranks get none.
  RankMap few = RankMap::contiguous(3, 4);
  EXPECT_TRUE(few.tiles_of(3).empty());
  EXPECT_THROW(RankMap::contiguous(0, 2), Error);
}

// The tiled objective (what renders use) against the whole-image Objective
// that tests/unit/test_reference_pytorch.cpp checks against PyTorch: on one
// tile and on four, the same losses and the same gradient.
// In one process a box copy is a crop of the tiles into the new boxes; a box
// the tiles do not cover is refused, not left unset.
TEST(BoxCopy, OneProcessCropsIntoTheNewBoxes) {
  SingleProcess alone;
  const std::vector<Box> from = {Box{0, 0, 5, 4}, Box{5, 0, 9, 4}};
  std::vector<float> local;
  for (const Box& box : from)
    for (int c = 0; c < 2; ++c)
      for (int y = box.y0; y < box.y1; ++y)
        for (int x = box.x0; x < box.x1; ++x) local.push_back(float(c * 100 + y * 10 + x));
  const std::vector<Box> to = {Box{3, 1, 7, 3}};
  auto moved = copy_boxes(alone, 2, from, RankMap::contiguous(2, 1), local, to, RankMap::contiguous(1, 1));
  std::vector<float> expected;
  for (int c = 0; c < 2; ++c)
    for (int y = 1; y < 3; ++y)
      for (int x = 3; x < 7; ++x) expected.push_back(float(c * 100 + y * 10 + x));
  EXPECT_EQ(moved, expected);
  const std::vector<Box> beyond = {Box{6, 2, 10, 4}};
  EXPECT_THROW(copy_boxes(alone, 2, from, RankMap::contiguous(2, 1), local, beyond, RankMap::contiguous(1, 1)), Error);
}

TEST(TiledObjective, MatchesTheWholeImageObjective) {
  WeightSet weights = testing::synthetic_weights("vgg19", 5);
  auto backend = make_backend("cpu");
  SingleProcess single;
  ObjectiveSettings settings;
  settings.content_layers = {"relu3_1"};
  settings.style_layers = {"relu1_1", "relu2_1", "relu3_1"};
  const int w = 61, h = 47;
  Shape shape{3, h, w};
  auto x_values = testing::uniform_vector(5, shape.elements(), -50.0f, 50.0f);
  auto content_values = testing::uniform_vector(6, shape.elements(), -50.0f, 50.0f);
  Tensor x = backend->allocate(shape, Layout::planar), content = backend->allocate(shape, Layout::planar);
  backend->upload(x_values, x);
  backend->upload(content_values, content);
  Tensor style = backend->allocate({3, 40, 52}, Layout::planar);
  backend->upload(testing::uniform_vector(7, style.elements(), -50.0f, 50.0f), style);

  testing::WholeObjective whole(*backend, architecture("vgg19"), weights, shape, settings, single);
  whole.set_content(content);
  whole.set_styles({&style}, {1.0f}, weights);
  Tensor whole_gradient = backend->allocate(shape, Layout::planar);
  LossTerms expected = whole.evaluate(x, whole_gradient);
  std::vector<float> expected_gradient(shape.elements());
  backend->download(whole_gradient, expected_gradient);

  const auto& arch = architecture("vgg19");
  std::vector<std::string> layers = {"relu3_1", "relu1_1", "relu2_1"};
  for (auto [rows, columns] : {std::pair{1, 1}, {2, 2}}) {
    SCOPED_TRACE(std::to_string(rows) + "x" + std::to_string(columns));
    int stride = total_stride_for(arch, layers);
    TileGrid grid = TileGrid::make(w, h, rows, columns, stride, halo_width_for(arch, layers),
                                   reduction_block_for(w, h, stride));
    TiledObjective tiled(*backend, arch, weights, grid, RankMap::contiguous(rows * columns, 1), settings, single);
    tiled.set_content(scatter_boxes(single, content_values, w, h, tiled.tiled_image().grown_boxes(), tiled.ranks()));
    tiled.set_style_targets(
        testing::whole_image_style_targets(*backend, arch, weights, Pooling::max, settings.style_layers, {&style},
                                           {1.0f}));
    Tensor local = backend->allocate({int(tiled.local_elements()), 1, 1}, Layout::planar);
    backend->upload(scatter_boxes(single, x_values, w, h, tiled.tiled_image().owned_boxes(), tiled.ranks()), local);
    Tensor local_gradient = backend->allocate(local.shape(), Layout::planar);
    LossTerms got = tiled.evaluate(local, local_gradient);
    EXPECT_NEAR(got.content, expected.content, 1e-5 * expected.content);
    EXPECT_NEAR(got.style, expected.style, 1e-5 * expected.style);
    EXPECT_NEAR(got.tv, expected.tv, 1e-5 * expected.tv);
    std::vector<float> gradient_local(local.elements()), gradient(shape.elements());
    backend->download(local_gradient, gradient_local);
    tiled.tiled_image().place(0, gradient_local.data(), gradient);
    EXPECT_LT(testing::max_relative_difference(gradient, expected_gradient), 1e-5);
  }
}

}  // namespace
}  // namespace tessera
