// --tiles auto against a memory budget: the user's --memory-per-rank, or on
// a GPU the free memory the render job measured (device_budget).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "render/job/tile_choice.hpp"
#include "tessera/error.hpp"

namespace tessera::job {
namespace {

RenderSettings vgg_settings() {
  RenderSettings settings;
  settings.model = "vgg19";
  settings.iterations = 100;
  settings.objective.content_layers = {"relu4_2"};
  settings.objective.style_layers = {"relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"};
  return settings;
}

constexpr int kWidth = 2048, kHeight = 1536;

TEST(TileChoice, GpuBudgetAddsTilesUntilTheEstimateFits) {
  RenderRequest o;
  RenderSettings whole = vgg_settings();
  std::vector<std::string> notes;
  choose_tiles(o, whole, kWidth, kHeight, 1, notes, 0, 0.0);
  EXPECT_EQ(whole.tile_rows * whole.tile_columns, 1);
  EXPECT_TRUE(notes.empty());
  const double one_tile = rank_memory_needed(o, whole, kWidth, kHeight, 1);

  // A budget the one tile does not fit: more tiles, each within it, said so.
  const double budget = 0.6 * one_tile;
  RenderSettings tiled = vgg_settings();
  choose_tiles(o, tiled, kWidth, kHeight, 1, notes, 0, budget);
  EXPECT_GT(tiled.tile_rows * tiled.tile_columns, 1);
  EXPECT_LE(rank_memory_needed(o, tiled, kWidth, kHeight, 1), budget);
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("the GPU's free memory"), std::string::npos) << notes[0];

  // A budget the one tile fits: no note.
  notes.clear();
  RenderSettings roomy = vgg_settings();
  choose_tiles(o, roomy, kWidth, kHeight, 1, notes, 0, 2.0 * one_tile);
  EXPECT_EQ(roomy.tile_rows * roomy.tile_columns, 1);
  EXPECT_TRUE(notes.empty());
}

TEST(TileChoice, UsersBudgetComesBeforeTheGpus) {
  RenderRequest o;
  o.memory_per_rank = "1TiB";
  RenderSettings settings = vgg_settings();
  std::vector<std::string> notes;
  choose_tiles(o, settings, kWidth, kHeight, 1, notes, 0, 1.0);  // a GPU budget of one byte, overruled
  EXPECT_EQ(settings.tile_rows * settings.tile_columns, 1);
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("--memory-per-rank 1TiB"), std::string::npos) << notes[0];
}

TEST(TileChoice, GpuTooSmallIsOneClearError) {
  RenderRequest o;
  RenderSettings settings = vgg_settings();
  std::vector<std::string> notes;
  try {
    choose_tiles(o, settings, kWidth, kHeight, 1, notes, 0, 1024.0 * 1024.0);
    FAIL() << "a 1 MiB GPU budget was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("the GPU's free memory (0.0 GiB)"), std::string::npos) << e.what();
  }
}

// A given grid is the user's word: the GPU budget does not change it.
TEST(TileChoice, GivenGridIsKept) {
  RenderRequest o;
  o.tiles = "1x2";
  RenderSettings settings = vgg_settings();
  std::vector<std::string> notes;
  choose_tiles(o, settings, kWidth, kHeight, 1, notes, 0, 1.0);
  EXPECT_EQ(settings.tile_rows, 1);
  EXPECT_EQ(settings.tile_columns, 2);
}

}  // namespace
}  // namespace tessera::job
