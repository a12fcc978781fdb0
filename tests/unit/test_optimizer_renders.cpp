// Renders that must style their image, as a user runs them: at sizes where
// L-BFGS with neural-style's fixed steps stalls (the losses are means over
// the image, so its first step moves pixels by less than f32 resolves, and
// the curvature pairs that follow are noise), and from noise, where those
// steps blow the loss up by orders of magnitude before recovering.
//
// With the real weights (vgg_r31) and images. The thresholds are for them:
// the fixture's two random convolutions on noise images converge within a
// few dozen iterations, so the tests that measure progress skip without the
// real data; the others run on the fixture where it is absent.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>

#include "support/render_cases.hpp"
#include "support/test_support.hpp"
#include "tessera/io/image_io.hpp"

namespace tessera {
namespace {

namespace fs = std::filesystem;
using testing::CommandRun;
using testing::run_tessera;

// The weights, content and style to render with, prepared once per process.
struct Inputs {
  std::string weights, content, style;
  bool real = false;
};

const Inputs& inputs() {
  static Inputs in = [] {
    Inputs made;
    fs::path folder = fs::temp_directory_path() / "tessera-test-optimizer-inputs";
    fs::create_directories(folder);
    auto models = testing::model_dir();
    auto images = testing::image_dir();
    if (models && images && fs::exists(*models / "vgg_r31.pth")) {
      CommandRun run = run_tessera("models import '" + (*models / "vgg_r31.pth").string() + "' -o vgg_r31.h5", folder);
      EXPECT_EQ(run.exit_code, 0) << run.output;
      made = {(folder / "vgg_r31.h5").string(), (*images / "tubingen.jpg").string(),
              (*images / "starry_night.jpg").string(), true};
    } else {
      CommandRun run = run_tessera(
          "models import '" + (testing::fixture_dir() / "weights/vgg19_prefix_zip.pth").string() + "' -o fixture.h5",
          folder);
      EXPECT_EQ(run.exit_code, 0) << run.output;
      io::write_image(folder / "content.png", testing::seeded_rgb(400, 300, 21));
      io::write_image(folder / "style.png", testing::seeded_rgb(300, 400, 22));
      made = {(folder / "fixture.h5").string(), (folder / "content.png").string(), (folder / "style.png").string(),
              false};
    }
    return made;
  }();
  return in;
}

std::vector<nlohmann::json> log_lines(const fs::path& path) {
  std::vector<nlohmann::json> lines;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

// Renders with the default optimiser (and `options`), writing the JSON log.
// No total variation (the real weights recommend none): on the fixture's
// noise images it would outweigh the style.
CommandRun run_render(const std::string& options, const fs::path& folder) {
  const Inputs& in = inputs();
  if (!in.real) std::cout << "(fixture weights and seeded images: ../shared not found)\n";
  return run_tessera("render --content '" + in.content + "' --style '" + in.style + "' --weights '" + in.weights +
                         "' --tv-weight 0 -q -o out.png --log-json log.jsonl " + options,
                     folder);
}

// The same, expected to succeed: the JSON log's lines.
std::vector<nlohmann::json> render(const std::string& options, const fs::path& folder) {
  CommandRun run = run_render(options, folder);
  EXPECT_EQ(run.exit_code, 0) << run.output;
  return log_lines(folder / "log.jsonl");
}

#define REQUIRE_REAL_DATA()                                                                              \
  if (!inputs().real)                                                                                    \
    GTEST_SKIP() << "needs ../shared/images and ../shared/models/vgg_r31.pth (or TESSERA_IMAGE_DIR and " \
                    "TESSERA_MODEL_DIR); not found";

double style_drop(const std::vector<nlohmann::json>& lines) {
  return double(lines.front()["style_loss"]) / double(lines.back()["style_loss"]);
}

// At 1024x768 neural-style's fixed steps moved the photo by less than 1e-4
// in 100 iterations (loss 6280 to 6259).
TEST(OptimizerRenders, LargeImageFromTheContentTakesTheStyle) {
  REQUIRE_REAL_DATA();
  fs::path folder = testing::scratch_dir();
  auto lines = render("--size 1024x768 --init content --iterations 40", folder);
  ASSERT_EQ(lines.size(), 40u);
  EXPECT_GE(style_drop(lines), 5.0) << lines.front()["style_loss"] << " -> " << lines.back()["style_loss"];
  int evaluations = 0;
  for (const auto& line : lines) evaluations += int(line["evaluations"]);
  EXPECT_GE(evaluations, 40);
  std::cout << "1024x768: style loss " << lines.front()["style_loss"] << " -> " << lines.back()["style_loss"] << " in "
            << lines.size() << " iterations, " << evaluations << " evaluations\n";
}

// A style image twice the output's size: the style loss starts large and
// the fixed steps stalled the same way (2430 to 2292 at 256 px).
TEST(OptimizerRenders, LargerStyleScaleFromTheContentTakesTheStyle) {
  REQUIRE_REAL_DATA();
  fs::path folder = testing::scratch_dir();
  auto lines = render("--size 256 --style-scale 2 --init content --iterations 40", folder);
  ASSERT_EQ(lines.size(), 40u);
  EXPECT_GE(style_drop(lines), 5.0) << lines.front()["style_loss"] << " -> " << lines.back()["style_loss"];
  for (const auto& line : lines) EXPECT_FALSE(line.contains("stalled")) << line.dump();
}

// The same render with neural-style's fixed steps stalls, and says so once,
// naming the cause; the log marks the iteration.
TEST(OptimizerRenders, StalledRenderSaysSo) {
  REQUIRE_REAL_DATA();
  fs::path folder = testing::scratch_dir();
  CommandRun run = run_render("--size 256 --style-scale 2 --init content --iterations 21 --line-search none", folder);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const std::string warning = "the render has stalled";
  auto at = run.output.find(warning);
  ASSERT_NE(at, std::string::npos) << run.output;
  EXPECT_EQ(run.output.find(warning, at + 1), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("--line-search strong-wolfe"), std::string::npos) << run.output;
  auto lines = log_lines(folder / "log.jsonl");
  ASSERT_EQ(lines.size(), 21u);
  for (const auto& line : lines) EXPECT_EQ(line.contains("stalled"), line["iteration"] == 20) << line.dump();
}

// From neural-style's noise, five seeds: the line search never evaluates a
// loss much above the start (the fixed steps reached 1e7 to 1e12 from
// about 4e3), and every seed's style loss falls at least 20x in 60
// iterations (the fixed steps: 4.5x for one seed).
TEST(OptimizerRenders, NoiseStartNeverOvershootsAndFallsFast) {
  REQUIRE_REAL_DATA();
  fs::path folder = testing::scratch_dir();
  for (int seed = 1; seed <= 5; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    auto lines = render("--size 128 --init random --iterations 60 --seed " + std::to_string(seed), folder);
    ASSERT_EQ(lines.size(), 60u);
    const double start = lines.front()["loss"];
    double highest = start;
    for (const auto& line : lines) {
      highest = std::max(highest, double(line["loss"]));
      if (line.contains("search_losses"))
        for (double loss : line["search_losses"]) highest = std::max(highest, loss);
    }
    EXPECT_LE(highest, 1.5 * start);
    EXPECT_GE(style_drop(lines), 20.0) << lines.front()["style_loss"] << " -> " << lines.back()["style_loss"];
  }
}

// --line-search none is neural-style's L-BFGS: one evaluation per
// iteration, none of them a search's.
TEST(OptimizerRenders, WithoutLineSearchEveryIterationIsOneEvaluation) {
  fs::path folder = testing::scratch_dir();
  auto lines = render("--size 64 --init random --iterations 8 --line-search none", folder);
  ASSERT_EQ(lines.size(), 8u);
  for (const auto& line : lines) {
    EXPECT_EQ(line["evaluations"], 1);
    EXPECT_FALSE(line.contains("search_losses"));
  }
  auto searched = render("--size 64 --init random --iterations 8", folder);
  ASSERT_EQ(searched.size(), 8u);
  EXPECT_GT(searched.front()["evaluations"], 1) << "the first step searches from its image-unit trial";
}

// Adam's learning rate is in grey levels whatever the weights' input
// convention: its first step moves every value by about the rate (10/255
// here), with Caffe's weights (0..255 input) as with torchvision's
// (normalised by the channels' deviations, about 4.4 units per RGB unit),
// where a rate in input units moved them by about 2.3.
TEST(OptimizerRenders, AdamFirstStepIsTheLearningRateInGreyLevels) {
  fs::path folder = testing::scratch_dir();
  const Image content = testing::seeded_rgb(40, 32, 31);
  io::write_image(folder / "content.png", content);
  io::write_image(folder / "style.png", testing::seeded_rgb(32, 40, 32));
  const Image saved = io::read_image(folder / "content.png");  // as 8-bit values
  for (const char* convention : {"caffe", "torchvision"}) {
    SCOPED_TRACE(convention);
    CommandRun import = run_tessera("models import '" +
                                        (testing::fixture_dir() / "weights/vgg19_prefix_zip.pth").string() +
                                        "' --input " + convention + " -o " + convention + ".h5",
                                    folder);
    ASSERT_EQ(import.exit_code, 0) << import.output;
    CommandRun run = run_tessera(std::string("render --content content.png --style style.png --weights ") + convention +
                                     ".h5 --size 40x32 --init content --optimizer adam --learning-rate 10 "
                                     "--iterations 1 --bits 32 -q -o stepped.tif",
                                 folder);
    ASSERT_EQ(run.exit_code, 0) << run.output;
    const Image stepped = io::read_image(folder / "stepped.tif");
    ASSERT_EQ(stepped.pixels.size(), saved.pixels.size());
    std::vector<double> moves;
    for (std::size_t i = 0; i < saved.pixels.size(); ++i)
      if (stepped.pixels[i] > 0.0f && stepped.pixels[i] < 1.0f)  // not clipped on writing
        moves.push_back(std::abs(double(stepped.pixels[i]) - saved.pixels[i]));
    ASSERT_GT(moves.size(), saved.pixels.size() / 2);
    std::nth_element(moves.begin(), moves.begin() + moves.size() / 2, moves.end());
    const double median = moves[moves.size() / 2];
    EXPECT_NEAR(median, 10.0 / 255.0, 0.1 * 10.0 / 255.0);
  }
}

}  // namespace
}  // namespace tessera
