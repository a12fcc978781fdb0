// Checkpoints: a render saved after k iterations and restored on other tiles
// continues exactly as the uninterrupted one; a damaged checkpoint file is
// refused, never used; an unfinished write never touches the last good one.
// And the coarse-to-fine schedule.
#include <gtest/gtest.h>

#include <fstream>
#include <map>

#include "support/render_cases.hpp"
#include "support/test_support.hpp"
#include "tessera/error.hpp"
#include "tessera/io/checkpoint.hpp"
#include "tessera/scales.hpp"

namespace tessera {
namespace {

namespace fs = std::filesystem;
using testing::kVggCase;
using testing::RenderCase;

struct Run {
  std::unique_ptr<Backend> backend = make_backend("cpu");
  SingleProcess alone;
  std::unique_ptr<Renderer> renderer;
};

// kVggCase from the content image on rows x columns tiles, with fewer
// L-BFGS pairs than iterations: the history wraps before a save.
std::unique_ptr<Run> start(const RenderCase& c, const std::string& optimizer, int rows, int columns,
                           int iterations) {
  auto run = std::make_unique<Run>();
  run->renderer = testing::case_renderer(c, *run->backend, run->alone, optimizer, rows, columns, -1, iterations, 4);
  return run;
}

class Continue : public ::testing::TestWithParam<std::string> {};

// Saved after 7 of 12 iterations on 1x1 tiles, restored on 2x3: the same
// image as 12 iterations without a stop.
TEST_P(Continue, OnOtherTilesEndsOnTheSameImage) {
  const std::string optimizer = GetParam();
  auto whole = start(kVggCase, optimizer, 1, 1, 12);
  ASSERT_EQ(whole->renderer->run(nullptr), 12);
  Image expected = whole->renderer->image();

  auto first = start(kVggCase, optimizer, 1, 1, 12);
  first->renderer->run([](const IterationReport& r) { return r.iteration < 7; });
  ASSERT_EQ(first->renderer->iterations_done(), 7);
  RenderState state = first->renderer->state();
  std::map<std::string, std::vector<float>> saved;
  first->renderer->save([&](const std::string& name, std::span<const float> v) {
    saved[name].assign(v.begin(), v.end());
  });
  if (optimizer == "lbfgs") {
    EXPECT_EQ(state.optimizer_state.scalars.at("history_pairs"), 4.0);
    EXPECT_EQ(saved.size(), 1u + 2u + 8u);  // image, direction, previous gradient, 4 pairs
  } else {
    EXPECT_EQ(saved.size(), 3u);
  }
  first.reset();

  auto second = start(kVggCase, optimizer, 2, 3, 12);
  second->renderer->restore(state, [&](const std::string& name) { return saved.at(name); });
  EXPECT_EQ(second->renderer->run(nullptr), 12);
  EXPECT_LE(testing::max_difference(second->renderer->image(), expected), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Optimizers, Continue, ::testing::Values("lbfgs", "adam"));

// A checkpoint file of a 7-iteration L-BFGS render (small history).
struct SavedFile {
  fs::path path;
  RenderState state;
  std::map<std::string, std::vector<float>> vectors;
};

SavedFile write_checkpoint(const fs::path& folder) {
  SavedFile file;
  auto run = start(kVggCase, "lbfgs", 1, 1, 7);
  run->renderer->run(nullptr);
  file.state = run->renderer->state();
  file.path = folder / "render.ckpt-s1-i000007.h5";
  io::CheckpointHeader header;
  header.settings = {{"model", "vgg19"}, {"size", "71x53"}};
  header.width = kVggCase.width;
  header.height = kVggCase.height;
  header.state = file.state;
  io::CheckpointWriter writer(file.path, header);
  run->renderer->save([&](const std::string& name, std::span<const float> v) {
    file.vectors[name].assign(v.begin(), v.end());
    writer.write(name, v);
  });
  EXPECT_GT(writer.commit(), 0u);
  return file;
}

// Everything the file holds, read and checked; throws on any damage.
void read_everything(const fs::path& path, const SavedFile& original, bool& identical) {
  io::CheckpointReader reader(path);
  const auto& header = reader.header();
  identical = header.state.iterations_done == original.state.iterations_done &&
              header.state.optimizer_state.scalars == original.state.optimizer_state.scalars &&
              header.state.optimizer_state.vectors == original.state.optimizer_state.vectors;
  for (const auto& [name, values] : original.vectors) identical = identical && reader.read(name) == values;
}

TEST(CheckpointFile, HoldsTheStateExactly) {
  fs::path folder = testing::scratch_dir();
  SavedFile file = write_checkpoint(folder);
  io::CheckpointReader reader(file.path);
  EXPECT_EQ(reader.header().settings.at("model"), "vgg19");
  EXPECT_EQ(reader.header().state.iterations_done, 7);
  EXPECT_EQ(reader.header().state.optimizer, "lbfgs");
  // Doubles survive exactly (rho, the Hessian diagonal).
  EXPECT_EQ(reader.header().state.optimizer_state.scalars, file.state.optimizer_state.scalars);
  reader.verify();
  for (const auto& [name, values] : file.vectors) EXPECT_EQ(reader.read(name), values) << name;
  // No temporary file is left beside it.
  int entries = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(folder)) ++entries;
  EXPECT_EQ(entries, 1);
}

TEST(CheckpointFile, TruncatedAnywhereIsRefused) {
  fs::path folder = testing::scratch_dir();
  SavedFile file = write_checkpoint(folder);
  std::ifstream in(file.path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (double fraction : {0.0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99}) {
    std::size_t keep = std::size_t(fraction * double(bytes.size()));
    for (std::size_t length : {keep, bytes.size() - 1}) {
      fs::path cut = folder / "cut.h5";
      std::ofstream(cut, std::ios::binary | std::ios::trunc).write(bytes.data(), std::streamsize(length));
      bool identical = false;
      try {
        read_everything(cut, file, identical);
        ADD_FAILURE() << "a checkpoint cut to " << length << " of " << bytes.size() << " bytes was accepted";
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("cut.h5"), std::string::npos) << e.what();
      }
    }
  }
}

// A flipped byte is either found, or it lies where nothing is read (padding,
// free space): what is read is then exactly what was written. Never garbage.
TEST(CheckpointFile, AFlippedByteIsFoundOrHarmless) {
  fs::path folder = testing::scratch_dir();
  SavedFile file = write_checkpoint(folder);
  std::ifstream in(file.path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::size_t positions = 400;
  int refused = 0;
  for (std::size_t k = 0; k < positions; ++k) {
    std::size_t at = k * (bytes.size() - 1) / (positions - 1);
    std::string damaged = bytes;
    damaged[at] = char(damaged[at] ^ 0x10);
    fs::path flipped = folder / "flipped.h5";
    std::ofstream(flipped, std::ios::binary | std::ios::trunc).write(damaged.data(), std::streamsize(damaged.size()));
    bool identical = false;
    try {
      read_everything(flipped, file, identical);
      EXPECT_TRUE(identical) << "byte " << at << " flipped: the checkpoint was read with different contents";
    } catch (const Error&) {
      ++refused;
    }
  }
  // Most of the file is checksummed data: most flips must be caught.
  EXPECT_GT(refused, int(positions) * 3 / 4);
}

TEST(CheckpointFile, AnUnfinishedWriteLeavesThePreviousOne) {
  fs::path folder = testing::scratch_dir();
  SavedFile file = write_checkpoint(folder);
  {
    io::CheckpointHeader header;
    header.width = kVggCase.width;
    header.height = kVggCase.height;
    header.state = file.state;
    io::CheckpointWriter writer(file.path, header);
    writer.write("image", std::vector<float>(3 * kVggCase.width * kVggCase.height, 0.5f));
    // Abandoned here, as if the process had failed half way.
  }
  bool identical = false;
  read_everything(file.path, file, identical);
  EXPECT_TRUE(identical);
  int entries = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(folder)) ++entries;
  EXPECT_EQ(entries, 1) << "the temporary file was left behind";
}

TEST(CheckpointFile, SettingsDifferencesNameEachSetting) {
  auto lines = io::settings_differences({{"model", "vgg19"}, {"size", "512x384"}, {"seed", "0"}},
                                        {{"model", "nin"}, {"size", "512x384"}, {"precision", "f32"}});
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0], "model: saved 'vgg19', now 'nin'");
  EXPECT_EQ(lines[1], "precision: saved (not recorded), now 'f32'");
  EXPECT_EQ(lines[2], "seed: saved '0', now (not recorded)");
  EXPECT_TRUE(io::settings_differences({{"a", "1"}}, {{"a", "1"}}).empty());
}

TEST(CheckpointFile, NamesSortNewestFirst) {
  fs::path folder = testing::scratch_dir();
  fs::path output = folder / "poster.exr";
  EXPECT_EQ(io::checkpoint_path(output, 2, 40).filename(), "poster.ckpt-s2-i000040.h5");
  for (auto [scale, iterations] : {std::pair{1, 500}, {2, 40}, {2, 200}, {10, 3}})
    std::ofstream(io::checkpoint_path(output, scale, iterations)) << "x";
  std::ofstream(folder / "other.ckpt-s9-i000001.h5") << "x";
  std::ofstream(folder / ".poster.ckpt-s9-i000001.h5.tmp-1-0") << "x";
  auto found = io::list_checkpoints(output);
  std::vector<std::string> names;
  for (const auto& path : found) names.push_back(path.filename().string());
  EXPECT_EQ(names, (std::vector<std::string>{"poster.ckpt-s10-i000003.h5", "poster.ckpt-s2-i000200.h5",
                                             "poster.ckpt-s2-i000040.h5", "poster.ckpt-s1-i000500.h5"}));
}

TEST(Scales, OneScaleIsTheOutput) {
  auto scales = plan_scales("1", 640, 480, 300);
  ASSERT_EQ(scales.size(), 1u);
  EXPECT_EQ(scales[0].width, 640);
  EXPECT_EQ(scales[0].height, 480);
  EXPECT_EQ(scales[0].iterations, 300);
}

TEST(Scales, CountHalvesTheSizeAndTheIterations) {
  auto scales = plan_scales("4", 7680, 4320, 800);
  ASSERT_EQ(scales.size(), 4u);
  std::vector<std::pair<int, int>> sizes;
  std::vector<int> iterations;
  for (const auto& s : scales) {
    sizes.push_back({s.width, s.height});
    iterations.push_back(s.iterations);
  }
  EXPECT_EQ(sizes, (std::vector<std::pair<int, int>>{{960, 540}, {1920, 1080}, {3840, 2160}, {7680, 4320}}));
  EXPECT_EQ(iterations, (std::vector<int>{800, 400, 200, 100}));
}

TEST(Scales, AutoStartsAtMost1024PixelsAcross) {
  auto long_sides = [](const std::vector<Scale>& scales) {
    std::vector<int> sides;
    for (const auto& s : scales) sides.push_back(std::max(s.width, s.height));
    return sides;
  };
  EXPECT_EQ(long_sides(plan_scales("auto", 512, 384, 100)), (std::vector<int>{512}));
  EXPECT_EQ(long_sides(plan_scales("auto", 1024, 768, 100)), (std::vector<int>{1024}));
  EXPECT_EQ(long_sides(plan_scales("auto", 1025, 768, 100)), (std::vector<int>{513, 1025}));
  EXPECT_EQ(long_sides(plan_scales("auto", 1920, 1080, 100)), (std::vector<int>{960, 1920}));
  EXPECT_EQ(long_sides(plan_scales("auto", 7680, 4320, 100)), (std::vector<int>{960, 1920, 3840, 7680}));
  auto print = plan_scales("auto", 7200, 10800, 400);  // portrait 24x36 in at 300 dpi
  EXPECT_EQ(long_sides(print), (std::vector<int>{675, 1350, 2700, 5400, 10800}));
  EXPECT_EQ(print.front().iterations, 400);
  EXPECT_EQ(print.back().iterations, 25);
}

TEST(Scales, ListOfLongSidesEndsAtTheOutput) {
  auto scales = plan_scales("512,1024", 3000, 2000, 100, {});
  ASSERT_EQ(scales.size(), 3u);
  EXPECT_EQ(scales[0].width, 512);
  EXPECT_EQ(scales[0].height, 341);
  EXPECT_EQ(scales[1].width, 1024);
  EXPECT_EQ(scales[1].height, 683);
  EXPECT_EQ(scales[2].width, 3000);
  auto explicit_counts = plan_scales("512,1024,3000", 3000, 2000, 100, {50, 20, 5});
  EXPECT_EQ(explicit_counts[2].iterations, 5);
  // Portrait: the long side is the height.
  EXPECT_EQ(plan_scales("2", 300, 600, 10)[0].height, 300);
}

TEST(Scales, MalformedSchedulesAreRefused) {
  EXPECT_THROW(plan_scales("0", 512, 512, 10), Error);
  EXPECT_THROW(plan_scales("three", 512, 512, 10), Error);
  EXPECT_THROW(plan_scales("1024,512", 2048, 2048, 10), Error);   // not increasing
  EXPECT_THROW(plan_scales("512,4096", 2048, 2048, 10), Error);   // beyond the output
  EXPECT_THROW(plan_scales("5", 512, 512, 10), Error);            // 32 px at the coarsest
  EXPECT_THROW(plan_scales("2", 512, 512, 10, {5}), Error);       // a count per scale
  EXPECT_THROW(plan_scales("2", 512, 512, 10, {5, 0}), Error);
}

}  // namespace
}  // namespace tessera
