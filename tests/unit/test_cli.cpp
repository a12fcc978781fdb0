// The tessera command as a user runs it: a real render with the real weights,
// and bad input, each of which must end with one clear line and a non-zero
// exit, never a crash or a half-written file.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "support/test_support.hpp"
#include "tessera/io/image_io.hpp"

namespace tessera {
namespace {

namespace fs = std::filesystem;

using testing::CommandRun;
using testing::run_tessera;

// Imported real weights, shared by the tests of this file (imported once).
fs::path real_weights() {
  static fs::path path;
  if (!path.empty()) return path;
  auto models = testing::model_dir();
  if (!models || !fs::exists(*models / "vgg_r31.pth")) return {};
  fs::path folder = fs::temp_directory_path() / "tessera-test-cli-weights";
  fs::create_directories(folder);
  CommandRun run = run_tessera("models import '" + (*models / "vgg_r31.pth").string() + "' -o vgg_r31.h5", folder);
  EXPECT_EQ(run.exit_code, 0) << run.output;
  path = folder / "vgg_r31.h5";
  return path;
}

#define REQUIRE_REAL_DATA()                                                                             \
  auto images = testing::image_dir();                                                                   \
  auto weights = real_weights();                                                                        \
  if (!images || weights.empty())                                                                       \
    GTEST_SKIP() << "needs ../shared/images and ../shared/models/vgg_r31.pth (or TESSERA_IMAGE_DIR and " \
                    "TESSERA_MODEL_DIR); not found";                                                    \
  std::string content = (*images / "tubingen.jpg").string();                                            \
  std::string style = (*images / "starry_night.jpg").string();

TEST(Cli, RealRenderReducesStyleLossTenfoldAndWritesTheImage) {
  REQUIRE_REAL_DATA();
  fs::path folder = testing::scratch_dir();
  CommandRun run = run_tessera("render --content '" + content + "' --style '" + style + "' --weights '" +
                            weights.string() +
                            "' --size 128 --init content --iterations 40 --tv-weight 0 -o out.png "
                            "--log-json log.jsonl --print-every 10",
                        folder);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  ASSERT_TRUE(fs::exists(folder / "out.png")) << run.output;

  std::ifstream log(folder / "log.jsonl");
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(log, line);) lines.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(lines.size(), 40u);
  EXPECT_EQ(lines.front()["iteration"], 1);
  for (const char* key : {"iteration", "loss", "content_loss", "style_loss", "tv_loss", "seconds", "compute_seconds",
                          "halo_seconds", "allreduce_seconds", "io_seconds", "evaluations", "collectives",
                          "collective_bytes", "collective_seconds", "messages", "message_bytes"})
    EXPECT_TRUE(lines.front().contains(key)) << key;
  double first = lines.front()["style_loss"], last = lines.back()["style_loss"];
  EXPECT_GT(first, 0.0);
  EXPECT_LT(last, first / 10.0) << "style loss " << first << " -> " << last;
  // Starting from the content image, the content loss starts at zero.
  EXPECT_EQ(double(lines.front()["content_loss"]), 0.0);

  Image out = io::read_image(folder / "out.png");
  EXPECT_EQ(std::max(out.width, out.height), 128);
  auto metadata = io::read_metadata(folder / "out.png");
  EXPECT_EQ(metadata["model"], "vgg19");
  EXPECT_EQ(metadata["iterations"], "40");
  EXPECT_EQ(metadata["style_weight"], "1000000");  // the normalised weights' recommended default
}

TEST(Cli, ConfigFileSaysWhatFlagsSayAndFlagsWin) {
  REQUIRE_REAL_DATA();
  fs::path folder = testing::scratch_dir();
  std::ofstream(folder / "preview.toml") << "content = \"" << content << "\"\nstyle = [\"" << style
                                         << "\"]\nsize = \"64\"\niterations = 3\noutput = \"from-config.png\"\n"
                                            "style_weight = 5e5\n";
  CommandRun run = run_tessera("render --config preview.toml --weights '" + weights.string() + "' --size 48", folder);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  Image out = io::read_image(folder / "from-config.png");
  EXPECT_EQ(std::max(out.width, out.height), 48);  // the flag won
  auto metadata = io::read_metadata(folder / "from-config.png");
  EXPECT_EQ(metadata["iterations"], "3");
  EXPECT_EQ(metadata["style_weight"], "500000");

  std::ofstream(folder / "bad.toml") << "colour = 3\n";
  run = run_tessera("render --config bad.toml", folder);
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.output.find("key 'colour': no such setting"), std::string::npos) << run.output;
}

// Interrupting a render (Ctrl-C, or SIGTERM from a scheduler) keeps what was
// done: the image so far is written, whole, and the exit code says so.
TEST(Cli, InterruptedRenderWritesTheImageSoFar) {
  REQUIRE_REAL_DATA();
  fs::path folder = testing::scratch_dir();
  std::string binary = testing::tessera_binary().string();
  std::vector<std::string> arguments = {binary, "render", "--content", content, "--style", style, "--weights",
                                        weights.string(), "--size", "64", "--iterations", "100000", "-o",
                                        (folder / "out.png").string(), "--log-json", (folder / "log.jsonl").string(),
                                        "--quiet"};
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    std::vector<char*> argv;
    for (auto& a : arguments) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(binary.c_str(), argv.data());
    _exit(127);
  }
  // Wait until a few iterations are logged, then interrupt.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  int logged = 0;
  while (logged < 3 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::ifstream log(folder / "log.jsonl");
    logged = 0;
    for (std::string line; std::getline(log, line);) ++logged;
  }
  ASSERT_GE(logged, 3) << "the render did not start iterating within a minute";
  EXPECT_FALSE(fs::exists(folder / "out.png"));
  kill(child, SIGINT);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 130);
  ASSERT_TRUE(fs::exists(folder / "out.png"));
  auto metadata = io::read_metadata(folder / "out.png");
  int done = std::stoi(metadata["iterations"]);
  EXPECT_GE(done, 3);
  EXPECT_LT(done, 100000);
}

// A halo smaller than the rule's is an approximation: the render measures
// and reports its error; the exact halo measures none.
TEST(Cli, SmallHaloReportsItsMeasuredError) {
  REQUIRE_REAL_DATA();
  fs::path folder = testing::scratch_dir();
  auto run_with = [&](const std::string& halo) {
    return run_tessera("render --content '" + content + "' --style '" + style + "' --weights '" + weights.string() +
                           "' --size 96 --iterations 2 --tiles 2x2 --halo " + halo + " -q -o out.png",
                       folder);
  };
  CommandRun small = run_with("4");
  ASSERT_EQ(small.exit_code, 0) << small.output;
  auto at = small.output.find("the gradient is off by up to ");
  ASSERT_NE(at, std::string::npos) << small.output;
  double percent = std::stod(small.output.substr(at + std::string("the gradient is off by up to ").size()));
  EXPECT_GT(percent, 0.1);
  CommandRun exact = run_with("24");  // the rule's halo for relu3_1
  ASSERT_EQ(exact.exit_code, 0) << exact.output;
  EXPECT_NE(exact.output.find("the gradient is off by up to 0 %"), std::string::npos) << exact.output;
}

// --memory-per-rank picks the tiles from an estimate: a large budget keeps
// one tile, a small one asks for more, an impossible one is a clear error.
TEST(Cli, MemoryBudgetChoosesTheTiles) {
  REQUIRE_REAL_DATA();
  fs::path folder = testing::scratch_dir();
  auto run_with = [&](const std::string& budget) {
    return run_tessera("render --content '" + content + "' --style '" + style + "' --weights '" + weights.string() +
                           "' --size 256 --iterations 1 --optimizer adam --memory-per-rank " + budget +
                           " -o out.png",
                       folder);
  };
  CommandRun large = run_with("8GiB");
  ASSERT_EQ(large.exit_code, 0) << large.output;
  EXPECT_NE(large.output.find("1x1 tiles for --memory-per-rank"), std::string::npos) << large.output;
  CommandRun small = run_with("240MiB");
  ASSERT_EQ(small.exit_code, 0) << small.output;
  EXPECT_EQ(small.output.find("1x1 tiles for"), std::string::npos) << small.output;
  EXPECT_NE(small.output.find("tiles for --memory-per-rank 240MiB"), std::string::npos) << small.output;
  CommandRun impossible = run_with("1MiB");
  EXPECT_EQ(impossible.exit_code, 1);
  EXPECT_NE(impossible.output.find("does not fit in --memory-per-rank 1MiB"), std::string::npos) << impossible.output;
}

// --dry-run checks the inputs and shows the plan without rendering; a grid
// whose estimate exceeds the free memory (here, terabytes on one tile) is
// warned about before any work.
TEST(Cli, DryRunShowsThePlanAndWarnsWhenMemoryIsShort) {
  REQUIRE_REAL_DATA();
  fs::path folder = testing::scratch_dir();
  auto dry_run = [&](const std::string& extra) {
    return run_tessera("render --content '" + content + "' --style '" + style + "' --weights '" + weights.string() +
                           "' --iterations 7 --dry-run -o out.png " + extra,
                       folder);
  };
  CommandRun fits = dry_run("--size 128");
  ASSERT_EQ(fits.exit_code, 0) << fits.output;
  EXPECT_NE(fits.output.find("scale 1 of 1: 128x96, 7 iterations, 1x1 tiles"), std::string::npos) << fits.output;
  EXPECT_NE(fits.output.find("nothing rendered"), std::string::npos) << fits.output;
  EXPECT_EQ(fits.output.find("warning"), std::string::npos) << fits.output;

  CommandRun huge = dry_run("--size 40000x30000 --tiles 1x1");
  ASSERT_EQ(huge.exit_code, 0) << huge.output;
  EXPECT_NE(huge.output.find("warning: the render needs about"), std::string::npos) << huge.output;
  EXPECT_NE(huge.output.find("GiB this machine has free"), std::string::npos) << huge.output;
  EXPECT_FALSE(fs::exists(folder / "out.png"));
}

struct BadInput {
  const char* name;
  std::string arguments;    // {C} content, {S} style, {W} weights
  std::string message;      // a substring the one-line error must hold
};

std::string expand(std::string text, const std::string& c, const std::string& s, const std::string& w) {
  for (auto [key, value] : {std::pair{"{C}", c}, std::pair{"{S}", s}, std::pair{"{W}", w}})
    for (auto at = text.find(key); at != std::string::npos; at = text.find(key)) text.replace(at, 3, value);
  return text;
}

TEST(Cli, BadInputGivesOneClearLineAndNoOutput) {
  REQUIRE_REAL_DATA();
  fs::path folder = testing::scratch_dir();
  std::ofstream(folder / "corrupt.jpg") << "this is not a JPEG";
  std::ofstream(folder / "corrupt.h5") << "this is not HDF5";
  const std::string base = "render --iterations 2 --size 32 --weights '{W}' ";
  std::vector<BadInput> cases = {
      {"missing content", base + "--content missing.jpg --style '{S}' -o out.png", "missing.jpg"},
      {"corrupt content", base + "--content corrupt.jpg --style '{S}' -o out.png", "corrupt.jpg"},
      {"missing style", base + "--content '{C}' --style nope.png -o out.png", "nope.png"},
      {"corrupt weights", "render --iterations 2 --size 32 --weights corrupt.h5 --content '{C}' --style '{S}' -o out.png",
       "corrupt.h5"},
      {"missing weights", "render --iterations 2 --size 32 --weights absent.h5 --content '{C}' --style '{S}' -o out.png",
       "absent.h5"},
      {"unavailable layer", base + "--content '{C}' --style '{S}' --style-layers relu4_1 -o out.png",
       "relu3_1"},
      {"unknown layer", base + "--content '{C}' --style '{S}' --content-layers relu9_9 -o out.png", "relu9_9"},
      {"bad size", "render --iterations 2 --size 12x --weights '{W}' --content '{C}' --style '{S}' -o out.png",
       "12x"},
      {"zero size", "render --iterations 2 --size 0 --weights '{W}' --content '{C}' --style '{S}' -o out.png", "0"},
      {"unwritable output", base + "--content '{C}' --style '{S}' -o no/such/folder/out.png", "no/such/folder"},
      {"unknown format", base + "--content '{C}' --style '{S}' -o out.xyz", ".xyz"},
      {"wrong model", base + "--content '{C}' --style '{S}' --model nin -o out.png", "nin"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    CommandRun run = run_tessera(expand(c.arguments, content, style, weights.string()), folder);
    EXPECT_EQ(run.exit_code, 1) << run.output;
    EXPECT_EQ(std::count(run.output.begin(), run.output.end(), '\n'), 1) << run.output;
    EXPECT_NE(run.output.find("tessera: error: "), std::string::npos) << run.output;
    EXPECT_NE(run.output.find(c.message), std::string::npos) << run.output;
    for (const auto& entry : fs::directory_iterator(folder))
      EXPECT_NE(entry.path().extension(), ".png") << "left behind: " << entry.path();
  }
}

// Small weights and images of the test's own, so that these run anywhere.
struct SmallInputs {
  fs::path folder;
  std::string weights;  // imported from the committed fixture
};

SmallInputs small_inputs() {
  SmallInputs inputs;
  inputs.folder = testing::scratch_dir();
  CommandRun import = run_tessera(
      "models import '" + (testing::fixture_dir() / "weights" / "vgg19_prefix_legacy.pth").string() + "' -o w.h5",
      inputs.folder);
  EXPECT_EQ(import.exit_code, 0) << import.output;
  inputs.weights = (inputs.folder / "w.h5").string();
  Image image(40, 32);
  for (std::size_t i = 0; i < image.pixels.size(); ++i) image.pixels[i] = float(i % 11) / 11.0f;
  io::write_image(inputs.folder / "c.png", image);
  io::write_image(inputs.folder / "s.png", image);
  return inputs;
}

// Everything that would fail at the end of a render (the output) or make a
// render meaningless (numbers) is refused at the start: one line, exit 1,
// and nothing written.
TEST(Cli, MistakesAreRefusedBeforeAnyWork) {
  SmallInputs in = small_inputs();
  fs::create_directories(in.folder / "folder.png");
  fs::create_directories(in.folder / "a-folder.toml");
  const std::string base = "render --content c.png --style s.png --weights w.h5 --size 32 --iterations 2 ";
  std::vector<BadInput> cases = {
      {"output is a folder", base + "-o folder.png", "it is a folder"},
      {"output folder takes no file", base + "-o /proc/out.png", "cannot create a file in its folder"},
      {"16 bits in a JPEG", base + "-o out.jpg --bits 16", "JPEG cannot hold 16-bit"},
      {"bits", base + "-o out.png --bits 12", "--bits"},
      {"nan weight", base + "-o out.png --style-weight nan", "--style-weight"},
      {"negative weight", base + "-o out.png --content-weight -1", "--content-weight"},
      {"infinite TV weight", base + "-o out.png --tv-weight inf", "--tv-weight"},
      {"negative threads", base + "-o out.png --threads -1", "--threads"},
      {"negative save period", base + "-o out.png --save-every -1", "--save-every"},
      {"zero print period", base + "-o out.png --print-every 0", "--print-every"},
      {"no history", base + "-o out.png --lbfgs-history 0", "--lbfgs-history"},
      {"Adam's rate with L-BFGS", base + "-o out.png --learning-rate 5", "Adam's"},
      {"zero Adam rate", base + "-o out.png --optimizer adam --learning-rate 0", "--learning-rate"},
      {"config is a folder", base + "-o out.png --config a-folder.toml", "is not a file"},
      {"config is missing", base + "-o out.png --config absent.toml", "not found"},
      {"weights given to --resume", base + "-o out.png --resume w.h5", "it is a weights file (--weights reads those)"},
      {"weights are a folder",
       "render --content c.png --style s.png --weights folder.png --size 32 --iterations 2 -o out.png",
       "is a folder, not a weights file"},
      {"size beyond any integer",
       "render --content c.png --style s.png --weights w.h5 --iterations 2 -o out.png --size 99999999999999999999",
       "larger than 65536 px"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    CommandRun run = run_tessera(c.arguments, in.folder);
    EXPECT_EQ(run.exit_code, 1) << run.output;
    EXPECT_EQ(std::count(run.output.begin(), run.output.end(), '\n'), 1) << run.output;
    EXPECT_NE(run.output.find("tessera: error: "), std::string::npos) << run.output;
    EXPECT_NE(run.output.find(c.message), std::string::npos) << run.output;
    for (const auto& entry : fs::directory_iterator(in.folder)) {
      const std::string name = entry.path().filename().string();
      EXPECT_TRUE(name == "w.h5" || name == "c.png" || name == "s.png" || name == "folder.png" ||
                  name == "a-folder.toml" || name == "command-output.txt")
          << "left behind: " << name;
    }
  }
  // The same settings without the mistake render.
  CommandRun good = run_tessera(base + "-o out.png", in.folder);
  EXPECT_EQ(good.exit_code, 0) << good.output;
}

// Command-line usage errors (unknown names, values of the wrong type, an
// option twice): one line, exit status 2, a suggestion for a near miss.
TEST(Cli, UsageErrorsAreOneLineWithExitStatus2) {
  fs::path folder = testing::scratch_dir();
  std::vector<BadInput> cases = {
      {"unknown option", "render --frobnicate", "unknown option '--frobnicate'"},
      {"misspelt option", "render --stlye x.png", "did you mean '--style'?"},
      {"misspelt option with a value", "render --iteratons=5", "did you mean '--iterations'?"},
      {"not a number", "render --style-blend-weights a,b", "--style-blend-weights"},
      {"given twice", "render --content a.png --content b.png", "--content is given more than once"},
      {"unknown command", "frobnicate", "unknown command 'frobnicate'"},
      {"misspelt command", "rendr --size 32", "did you mean 'render'?"},
      {"no command", "", "'tessera' needs a command"},
      {"misspelt subcommand", "models lst", "did you mean 'list'?"},
      {"no subcommand", "models", "'tessera models' needs a command"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    CommandRun run = run_tessera(c.arguments, folder);
    EXPECT_EQ(run.exit_code, 2) << run.output;
    EXPECT_EQ(std::count(run.output.begin(), run.output.end(), '\n'), 1) << run.output;
    EXPECT_EQ(run.output.rfind("tessera: error: ", 0), 0u) << run.output;
    EXPECT_NE(run.output.find(c.message), std::string::npos) << run.output;
  }
  CommandRun help = run_tessera("render --help", folder);
  EXPECT_EQ(help.exit_code, 0) << help.output;
  EXPECT_NE(help.output.find("--normalize-gradients"), std::string::npos);
}

// A neural-style command line, in kebab-case, renders: its names are
// aliases of tessera's, and the settings land where they should.
TEST(Cli, NeuralStyleNamesAreAccepted) {
  SmallInputs in = small_inputs();
  CommandRun run = run_tessera(
      "render --content-image c.png --style-image s.png --output-image ns.png --image-size 24 "
      "--num-iterations 3 --init image --init-image s.png --original-colors 1 --gpu -1 "
      "--lbfgs-num-correction 5 --print-iter 1 --save-iter 0 --normalize-gradients --weights w.h5",
      in.folder);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  Image out = io::read_image(in.folder / "ns.png");
  EXPECT_EQ(std::max(out.width, out.height), 24);
  auto settings = io::read_metadata(in.folder / "ns.png");
  EXPECT_EQ(settings["original_colors"], "true");
  EXPECT_EQ(settings["init"], "s.png");
  EXPECT_EQ(settings["normalize_gradients"], "yes");
  EXPECT_EQ(settings["line_search"], "none");  // implied by normalised gradients
  EXPECT_NE(run.output.find("on cpu"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("iteration 3/3"), std::string::npos) << run.output;
  // neural-style's misuse is said, not guessed at.
  CommandRun no_image = run_tessera("render --content c.png --style s.png --weights w.h5 --init image", in.folder);
  EXPECT_EQ(no_image.exit_code, 1) << no_image.output;
  EXPECT_NE(no_image.output.find("--init image needs --init-image"), std::string::npos) << no_image.output;
}

// An output of another shape than the content's: cropped by default, padded
// or stretched on request, and the log says which.
TEST(Cli, FitCropsByDefaultAndSaysSo) {
  SmallInputs in = small_inputs();  // 40x32 images
  const std::string base = "render --content c.png --style s.png --weights w.h5 --iterations 1 --size 40x20 ";
  CommandRun crop = run_tessera(base + "-o crop.png", in.folder);
  ASSERT_EQ(crop.exit_code, 0) << crop.output;
  EXPECT_NE(crop.output.find("cropped to 40x20"), std::string::npos) << crop.output;
  CommandRun pad = run_tessera(base + "-o pad.png --fit pad", in.folder);
  ASSERT_EQ(pad.exit_code, 0) << pad.output;
  EXPECT_NE(pad.output.find("padded with black to 64x32"), std::string::npos) << pad.output;
  CommandRun stretch = run_tessera(base + "-o stretch.png --fit stretch", in.folder);
  ASSERT_EQ(stretch.exit_code, 0) << stretch.output;
  EXPECT_NE(stretch.output.find("stretched to 40x20"), std::string::npos) << stretch.output;
  for (const char* name : {"crop.png", "pad.png", "stretch.png"}) {
    Image out = io::read_image(in.folder / name);
    EXPECT_EQ(out.width, 40) << name;
    EXPECT_EQ(out.height, 20) << name;
  }
}

// The default thread count follows what the process may use, and OpenMP
// waits passively unless the user chose otherwise.
TEST(Cli, ThreadsFollowTheCpusAllowedAndWaitPassively) {
  SmallInputs in = small_inputs();
  auto debug_line = [&](const std::string& prefix) {
    fs::path log = in.folder / "threads.txt";
    std::string command = "cd '" + in.folder.string() + "' && " + prefix + " '" + testing::tessera_binary().string() +
                          "' render --content c.png --style s.png --weights w.h5 --size 24 --iterations 1 -o t.png "
                          "-v > '" + log.string() + "' 2>&1";
    EXPECT_EQ(std::system(command.c_str()), 0) << command;
    std::ifstream in_log(log);
    std::string line;
    while (std::getline(in_log, line))
      if (line.find(" threads: ") != std::string::npos) return line;
    return std::string("(no threads line)");
  };
  EXPECT_NE(debug_line("env -u OMP_WAIT_POLICY taskset -c 0").find("1 threads: the 1 CPUs this process may use; "
                                                                    "OpenMP waits passive"),
            std::string::npos)
      << debug_line("env -u OMP_WAIT_POLICY taskset -c 0");
  EXPECT_NE(debug_line("env SLURM_CPUS_PER_TASK=1").find("1 threads: Slurm's --cpus-per-task 1"), std::string::npos)
      << debug_line("env SLURM_CPUS_PER_TASK=1");
  EXPECT_NE(debug_line("env OMP_WAIT_POLICY=active").find("OpenMP waits active"), std::string::npos)
      << debug_line("env OMP_WAIT_POLICY=active");
}

// Weights by name: ./models first, then $XDG_DATA_HOME/tessera/models;
// $TESSERA_WEIGHTS_DIR alone when set.
// Each scale starts a new optimiser: the estimate counts no more L-BFGS
// pairs than the scale's iterations can fill.
TEST(Cli, MemoryEstimateCountsTheHistoryAScaleCanFill) {
  SmallInputs in = small_inputs();
  auto estimate = [&](const std::string& extra) {
    CommandRun run = run_tessera("render --content c.png --style s.png --weights w.h5 --size 512 --scales 1 "
                                 "--lbfgs-history 100 --dry-run " + extra, in.folder);
    EXPECT_EQ(run.exit_code, 0) << run.output;
    const auto at = run.output.find("about ");
    if (at == std::string::npos) return -1.0;
    return std::stod(run.output.substr(at + 6));
  };
  const double few = estimate("--iterations 4"), many = estimate("--iterations 400");
  EXPECT_GT(few, 0.0);
  EXPECT_LT(few, many);
  EXPECT_EQ(estimate("--iterations 100"), many);  // the history is full either way
}

// cuDNN describes tensors with 32-bit sizes: on the CUDA backend a tile grid
// whose activations would pass 2^31 values is refused, naming the grid that
// fits, and --tiles auto chooses that grid (a dry run checks it without a
// GPU). The CPU backend has no such limit.
TEST(Cli, GpuTensorLimitChoosesTheTiles) {
  SmallInputs in = small_inputs();
  const std::string base = "render --content c.png --style s.png --weights w.h5 --size 10000x6000 --scales 1 "
                           "--dry-run -o out.png ";
  CommandRun refused = run_tessera(base + "--backend cuda --tiles 1x1", in.folder);
  EXPECT_EQ(refused.exit_code, 1) << refused.output;
  EXPECT_NE(refused.output.find("over the 2147483647 one GPU tensor may hold"), std::string::npos) << refused.output;
  EXPECT_NE(refused.output.find("use --tiles 1x2"), std::string::npos) << refused.output;
  CommandRun chosen = run_tessera(base + "--backend cuda --tiles auto", in.folder);
  EXPECT_EQ(chosen.exit_code, 0) << chosen.output;
  EXPECT_NE(chosen.output.find("1x2 tiles on 1 rank(s)"), std::string::npos) << chosen.output;
  CommandRun cpu = run_tessera(base + "--backend cpu --tiles 1x1", in.folder);
  EXPECT_EQ(cpu.exit_code, 0) << cpu.output;
}

// A render that reaches a minimum early says so as news, not as a warning.
TEST(Cli, ConvergingEarlyIsNotAWarning) {
  SmallInputs in = small_inputs();
  CommandRun run = run_tessera("render --content c.png --style s.png --weights w.h5 --size 32 --iterations 10 "
                               "--style-weight 0 --tv-weight 0 --init content -o out.png", in.folder);
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("tessera: info: finished after"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("converged"), std::string::npos) << run.output;
  EXPECT_EQ(run.output.find("warning"), std::string::npos) << run.output;
}

TEST(Cli, ModelsImportChecksWhereItWritesFirst) {
  fs::path folder = testing::scratch_dir();
  fs::create_directories(folder / "a-folder.h5");
  const std::string source = "models import '" + (testing::fixture_dir() / "weights" / "vgg19_prefix_legacy.pth").string();
  CommandRun missing = run_tessera(source + "' -o no/such/w.h5", folder);
  EXPECT_EQ(missing.exit_code, 1) << missing.output;
  EXPECT_NE(missing.output.find("the folder 'no/such' does not exist"), std::string::npos) << missing.output;
  CommandRun into_folder = run_tessera(source + "' -o a-folder.h5", folder);
  EXPECT_EQ(into_folder.exit_code, 1) << into_folder.output;
  EXPECT_NE(into_folder.output.find("it is a folder"), std::string::npos) << into_folder.output;
}

TEST(Cli, WeightsNamesAreLookedForInTheWeightsFolders) {
  SmallInputs in = small_inputs();
  const fs::path xdg = in.folder / "xdg";
  fs::create_directories(xdg / "tessera" / "models");
  fs::copy_file(in.weights, xdg / "tessera" / "models" / "mine.h5");
  auto dry_run = [&](const std::string& environment) {
    fs::path log = in.folder / "weights.txt";
    std::string command = "cd '" + in.folder.string() + "' && env -u TESSERA_WEIGHTS_DIR " + environment + " '" +
                          testing::tessera_binary().string() +
                          "' render --content c.png --style s.png --weights mine --size 24 --dry-run > '" +
                          log.string() + "' 2>&1";
    int status = std::system(command.c_str());
    std::ifstream in_log(log);
    std::string text((std::istreambuf_iterator<char>(in_log)), std::istreambuf_iterator<char>());
    return std::make_pair(WIFEXITED(status) ? WEXITSTATUS(status) : -1, text);
  };
  auto [found, found_text] = dry_run("XDG_DATA_HOME='" + xdg.string() + "'");
  EXPECT_EQ(found, 0) << found_text;
  EXPECT_NE(found_text.find((xdg / "tessera" / "models" / "mine.h5").string()), std::string::npos) << found_text;
  auto [only, only_text] = dry_run("XDG_DATA_HOME='" + xdg.string() + "' TESSERA_WEIGHTS_DIR=elsewhere");
  EXPECT_EQ(only, 1) << only_text;
  EXPECT_NE(only_text.find("elsewhere/mine.h5"), std::string::npos) << only_text;
  EXPECT_EQ(std::count(only_text.begin(), only_text.end(), '\n'), 1) << only_text;
}

}  // namespace
}  // namespace tessera
