// The tessera command stopped and continued as a cluster does it: a real
// SIGTERM to one rank mid-render, then --resume on another rank count; a
// kill while a checkpoint is being written; damaged and foreign checkpoints.
// Each continued render must end on the uninterrupted render's image.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <numeric>
#include <sstream>
#include <thread>

#include "support/render_cases.hpp"
#include "support/test_support.hpp"
#include "tessera/io/checkpoint.hpp"
#include "tessera/io/image_io.hpp"

namespace tessera {
namespace {

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

std::vector<std::string> split_words(const std::string& text) {
  std::vector<std::string> words;
  std::istringstream in(text);
  for (std::string word; in >> word;) words.push_back(word);
  return words;
}

// mpirun and its options, from CTest (TESSERA_MPIRUN, space separated).
std::vector<std::string> mpirun(int ranks) {
  const char* launcher = std::getenv("TESSERA_MPIRUN");
  std::vector<std::string> words = split_words(launcher ? launcher : "mpirun");
  words.insert(words.end(), {"-np", std::to_string(ranks), "-x", "OMP_NUM_THREADS=1"});
  return words;
}

// A small render of the fixture weights: every test renders the same thing.
class Resume : public ::testing::Test {
 protected:
  void SetUp() override {
    folder_ = testing::scratch_dir();
    ASSERT_EQ(run({tessera(), "models", "import", (testing::fixture_dir() / "weights/vgg19_prefix_zip.pth").string(),
                   "-o", "weights.h5"}),
              0);
    io::write_image(folder_ / "content.png", testing::seeded_rgb(96, 80, 11));
    io::write_image(folder_ / "style.png", testing::seeded_rgb(80, 96, 12));
  }

  static std::string tessera() { return testing::tessera_binary().string(); }

  std::vector<std::string> render(const std::vector<std::string>& extra, int ranks = 1) {
    std::vector<std::string> command = ranks > 1 ? mpirun(ranks) : std::vector<std::string>{};
    for (std::string word : {tessera(), std::string("render"), std::string("--content"), std::string("content.png"),
                             std::string("--style"), std::string("style.png"), std::string("--weights"),
                             std::string("weights.h5"), std::string("--content-layers"), std::string("relu1_2"),
                             std::string("--style-layers"), std::string("relu1_1,relu1_2"), std::string("-q")})
      command.push_back(word);
    command.insert(command.end(), extra.begin(), extra.end());
    return command;
  }

  // Starts `command` in the test's folder; output to `log`.
  pid_t spawn(const std::vector<std::string>& command, const std::string& log = "command.log") {
    pid_t child = fork();
    if (child == 0) {
      if (chdir(folder_.c_str()) != 0) _exit(126);
      FILE* out = std::freopen(log.c_str(), "w", stdout);
      if (!out || dup2(fileno(stdout), 2) < 0) _exit(126);
      std::vector<std::string> words = command;
      std::vector<char*> argv;
      for (auto& w : words) argv.push_back(w.data());
      argv.push_back(nullptr);
      execvp(argv[0], argv.data());
      _exit(127);
    }
    return child;
  }

  static int wait_for(pid_t child) {
    int status = 0;
    if (waitpid(child, &status, 0) != child) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  int run(const std::vector<std::string>& command, const std::string& log = "command.log") {
    return wait_for(spawn(command, log));
  }

  std::string text(const std::string& name) const {
    std::ifstream in(folder_ / name);
    std::stringstream all;
    all << in.rdbuf();
    return all.str();
  }

  std::vector<nlohmann::json> log_lines(const std::string& name) const {
    std::vector<nlohmann::json> lines;
    std::ifstream in(folder_ / name);
    for (std::string line; std::getline(in, line);) {
      try {
        lines.push_back(nlohmann::json::parse(line));
      } catch (const nlohmann::json::exception&) {
        break;  // the line being written
      }
    }
    return lines;
  }

  // Waits until the JSON log satisfies `ready`: up to four minutes, as a render
  // slows several times over when other tests load every core.
  bool wait_for_log(const std::string& name, const std::function<bool(const nlohmann::json&)>& ready) const {
    auto deadline = clock_type::now() + std::chrono::seconds(240);
    while (clock_type::now() < deadline) {
      for (const auto& line : log_lines(name))
        if (ready(line)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
  }

  // The last-started rank of a job launched by `launcher` (its child).
  static pid_t a_rank_of(pid_t launcher) {
    pid_t found = -1;
    for (const auto& entry : fs::directory_iterator("/proc")) {
      std::ifstream stat(entry.path() / "stat");
      std::string pid, name, state;
      pid_t parent = 0;
      if (!(stat >> pid >> name >> state >> parent)) continue;
      if (parent == launcher && name == "(tessera)") found = std::max(found, pid_t(std::stoi(pid)));
    }
    return found;
  }

  double difference(const std::string& a, const std::string& b) const {
    return testing::max_difference(io::read_image(folder_ / a), io::read_image(folder_ / b));
  }

  fs::path folder_;
};

// The JSON log counts what each iteration's communication cost. With the
// history of inner products, an iteration of L-BFGS makes two collectives
// for each evaluation of the loss (the objective's sums, the history's
// products), however long the history, besides the render's own agreement
// on stopping (after the report).
using JobLog = Resume;

TEST_F(JobLog, TwoRanksMakeTwoCollectivesAnEvaluation) {
  ASSERT_EQ(run(render({"--size", "96", "--iterations", "12", "--tiles", "1x2", "--log-json", "log.jsonl", "-o",
                        "out.png"},
                       2)),
            0)
      << text("command.log");
  auto lines = log_lines("log.jsonl");
  ASSERT_EQ(lines.size(), 12u);
  for (const auto& line : lines) {
    SCOPED_TRACE(line.dump());
    const int evaluations = line.at("evaluations");
    ASSERT_GE(evaluations, 1);
    EXPECT_LE(int(line.at("collectives")), 2 * evaluations);
    EXPECT_GT(int(line.at("collective_bytes")), 0);
    EXPECT_GE(double(line.at("collective_seconds")), 0.0);
    // Two tiles on two ranks exchange halos: one message each way an
    // evaluation, at least.
    EXPECT_GE(int(line.at("messages")), evaluations);
    EXPECT_GT(int(line.at("message_bytes")), 0);
  }
}

// SIGTERM to one of two ranks: every rank stops after the same iteration, a
// checkpoint and the image so far are written, the job exits 130. Three
// ranks continue it to the uninterrupted render's image.
TEST_F(Resume, SigtermThenResumeOnAnotherRankCount) {
  const std::vector<std::string> settings = {"--size", "200", "--iterations", "150"};
  auto whole = render(settings);
  whole.insert(whole.end(), {"-o", "whole.exr"});
  ASSERT_EQ(run(whole), 0) << text("command.log");

  auto first = render(settings, 2);
  first.insert(first.end(), {"-o", "part.exr", "--log-json", "log.jsonl"});
  pid_t launcher = spawn(first, "first.log");
  ASSERT_TRUE(wait_for_log("log.jsonl", [](const auto& line) { return line["iteration"] >= 10; }))
      << text("first.log");
  pid_t rank = a_rank_of(launcher);
  ASSERT_GT(rank, 0);
  kill(rank, SIGTERM);
  EXPECT_EQ(wait_for(launcher), 130) << text("first.log");
  auto lines = log_lines("log.jsonl");
  ASSERT_FALSE(lines.empty());
  const int stopped_at = lines.back()["iteration"];
  EXPECT_LT(stopped_at, 150) << "the render finished before the signal";
  auto checkpoints = io::list_checkpoints(folder_ / "part.exr");
  ASSERT_EQ(checkpoints.size(), 1u);
  EXPECT_EQ(checkpoints[0].filename(), io::checkpoint_path("part.exr", 1, stopped_at).filename());
  EXPECT_NE(text("first.log").find("--resume auto continues"), std::string::npos) << text("first.log");

  auto second = render(settings, 3);
  second.insert(second.end(), {"-o", "part.exr", "--resume", "auto"});
  ASSERT_EQ(run(second, "second.log"), 0) << text("second.log");
  EXPECT_NE(text("second.log").find("resuming from"), std::string::npos) << text("second.log");
  EXPECT_LE(difference("part.exr", "whole.exr"), 1e-4);
}

// Three scales, stopped inside the second, continued by one process on 2x2
// tiles: the same final image. And each scale starts below a cold start at
// its size, and the image has the requested size.
TEST_F(Resume, MultiScaleStoppedInsideTheSecondScale) {
  const std::vector<std::string> settings = {"--size", "256", "--scales", "3", "--iterations", "80"};
  auto whole = render(settings);
  whole.insert(whole.end(), {"-o", "whole.exr", "--log-json", "whole.jsonl"});
  ASSERT_EQ(run(whole), 0) << text("command.log");
  Image image = io::read_image(folder_ / "whole.exr");
  EXPECT_EQ(image.width, 256);
  EXPECT_EQ(image.height, 213);

  // Loss at the first iteration of each later scale against a cold start.
  std::map<int, std::pair<double, std::string>> scale_start;  // scale -> (loss, size)
  for (const auto& line : log_lines("whole.jsonl")) {
    int scale = line["scale"];
    if (!scale_start.count(scale))
      scale_start[scale] = {line["loss"].get<double>(),
                            std::to_string(line["width"].get<int>()) + "x" + std::to_string(line["height"].get<int>())};
  }
  ASSERT_EQ(scale_start.size(), 3u);
  for (int scale : {2, 3}) {
    auto cold = render({"--size", scale_start[scale].second, "--iterations", "1", "--log-json", "cold.jsonl", "-o",
                        "cold.png"});
    ASSERT_EQ(run(cold), 0) << text("command.log");
    double cold_loss = log_lines("cold.jsonl").at(0)["loss"];
    EXPECT_LT(scale_start[scale].first, cold_loss) << "scale " << scale;
  }

  auto first = render(settings, 2);
  first.insert(first.end(), {"-o", "part.exr", "--log-json", "log.jsonl"});
  pid_t launcher = spawn(first, "first.log");
  ASSERT_TRUE(wait_for_log("log.jsonl", [](const auto& line) { return line["scale"] == 2 && line["iteration"] >= 3; }))
      << text("first.log");
  kill(a_rank_of(launcher), SIGTERM);
  EXPECT_EQ(wait_for(launcher), 130) << text("first.log");
  auto lines = log_lines("log.jsonl");
  ASSERT_EQ(lines.back()["scale"], 2) << "the signal did not arrive inside the second scale";
  EXPECT_LT(lines.back()["iteration"], 40);

  auto second = render(settings);
  second.insert(second.end(), {"-o", "part.exr", "--resume", "auto", "--tiles", "2x2"});
  ASSERT_EQ(run(second, "second.log"), 0) << text("second.log");
  EXPECT_NE(text("second.log").find("scale 2 of 3"), std::string::npos) << text("second.log");
  // The scale's summary counts the iterations this run did, not those before.
  const int stopped_at = lines.back()["iteration"];
  EXPECT_NE(text("second.log").find("scale 2 of 3: " + std::to_string(40 - stopped_at) + " iterations in"),
            std::string::npos)
      << text("second.log");
  EXPECT_NE(text("second.log").find("resumed after iteration " + std::to_string(stopped_at)), std::string::npos)
      << text("second.log");
  EXPECT_LE(difference("part.exr", "whole.exr"), 1e-4);
}

// Between scales each rank upsamples the pixels its tiles own at the next
// scale from the part of the image the filter reaches: three scales (uneven
// ratios) on four ranks end on the same image as on one rank with the same
// tiles, value for value, and as one whole tile within the tiled render's
// tolerance. (ImageResize.InPartsEqualsTheWholeResize ties the parts to the
// whole resize.)
TEST_F(Resume, ScalesUpsampledInPartsAsOneRankDoes) {
  const std::vector<std::string> settings = {"--size", "200", "--scales", "72,136", "--iterations", "8", "--init",
                                             "content"};
  for (auto [name, ranks, tiles] : {std::tuple{"one.exr", 1, "2x2"}, std::tuple{"four.exr", 4, "2x2"},
                                    std::tuple{"whole.exr", 1, "1x1"}}) {
    auto command = render(settings, ranks);
    command.insert(command.end(), {"--tiles", tiles, "-o", name});
    ASSERT_EQ(run(command), 0) << text("command.log");
  }
  EXPECT_EQ(difference("four.exr", "one.exr"), 0.0);
  EXPECT_LE(difference("four.exr", "whole.exr"), 1e-4);
}

// A storm of SIGUSR1 (a checkpoint request each, as Slurm's --signal sends
// one) on a render of 1 and 2 ranks: the render ends normally on the
// uninterrupted render's image. Before the signals were taken on a thread
// of their own, a signal landing while a oneDNN JIT GEMM kernel ran wrote
// its frame into the heap (see src/cli/signals.hpp): this render aborted
// with glibc's "corrupted size vs. prev_size" after 15 to 110 signals, in
// three runs out of three.
class SignalStorm : public Resume, public ::testing::WithParamInterface<int> {};

TEST_P(SignalStorm, LeavesTheImageIntact) {
  const int ranks = GetParam();
  // A short history keeps each checkpoint small, so that most of the time
  // (and most of the signals) goes to the network, not to writing files.
  const std::vector<std::string> settings = {"--size", "128", "--iterations", "150", "--lbfgs-history", "4"};
  auto whole = render(settings);
  whole.insert(whole.end(), {"-o", "whole.exr"});
  ASSERT_EQ(run(whole), 0) << text("command.log");

  auto stormed = render(settings, ranks);
  stormed.insert(stormed.end(), {"-o", "stormed.exr", "--log-json", "log.jsonl"});
  pid_t launcher = spawn(stormed, "stormed.log");
  ASSERT_TRUE(wait_for_log("log.jsonl", [](const auto&) { return true; })) << text("stormed.log");
  // The last rank (or the single process): mpirun would pass a signal sent
  // to itself on to every rank; this reaches one, as a node's local kill does.
  pid_t target = ranks > 1 ? a_rank_of(launcher) : launcher;
  ASSERT_GT(target, 0);
  int sent = 0, status = 0;
  while (waitpid(launcher, &status, WNOHANG) == 0) {
    if (kill(target, SIGUSR1) == 0) ++sent;
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  ASSERT_TRUE(WIFEXITED(status)) << "ended by signal " << WTERMSIG(status) << "\n" << text("stormed.log");
  ASSERT_EQ(WEXITSTATUS(status), 0) << text("stormed.log");
  EXPECT_GE(sent, 300) << "too few signals to mean anything";
  EXPECT_LE(difference("stormed.exr", "whole.exr"), 1e-6);
}

INSTANTIATE_TEST_SUITE_P(Ranks, SignalStorm, ::testing::Values(1, 2),
                         [](const auto& info) { return std::to_string(info.param) + "_ranks"; });

// Every thread of a running render, on 1 and on 2 ranks, blocks SIGINT,
// SIGTERM and SIGUSR1 but the one signal thread, which takes them with
// sigwait() (and so shows them unblocked while it waits): no thread that may
// be inside a oneDNN kernel is ever interrupted by one. Read from
// /proc/PID/task/TID/status (SigBlk: a hexadecimal mask whose bit N-1 is
// signal N), which covers the threads the libraries start too.
class SignalMask : public Resume, public ::testing::WithParamInterface<int> {};

TEST_P(SignalMask, EveryThreadBlocksTheWatchedSignals) {
  const int ranks = GetParam();
  auto command = render({"--size", "128", "--iterations", "100000"}, ranks);
  command.insert(command.end(), {"-o", "out.png", "--log-json", "log.jsonl"});
  pid_t launcher = spawn(command, "render.log");
  ASSERT_TRUE(wait_for_log("log.jsonl", [](const auto& line) { return line["iteration"] >= 3; }))
      << text("render.log");
  std::vector<pid_t> processes;
  if (ranks == 1) {
    processes.push_back(launcher);
  } else {
    for (const auto& entry : fs::directory_iterator("/proc")) {
      std::ifstream stat(entry.path() / "stat");
      std::string pid, name, state;
      pid_t parent = 0;
      if (stat >> pid >> name >> state >> parent && parent == launcher && name == "(tessera)")
        processes.push_back(std::stoi(pid));
    }
  }
  ASSERT_EQ(int(processes.size()), ranks);
  const unsigned long long watched = (1ull << (SIGINT - 1)) | (1ull << (SIGTERM - 1)) | (1ull << (SIGUSR1 - 1));
  int threads = 0;
  for (pid_t process : processes) {
    int signal_threads = 0;
    for (const auto& task : fs::directory_iterator(fs::path("/proc") / std::to_string(process) / "task")) {
      std::ifstream status(task.path() / "status");
      std::string name, blocked;
      for (std::string line; std::getline(status, line);) {
        if (line.rfind("Name:", 0) == 0) name = line.substr(5);
        if (line.rfind("SigBlk:", 0) == 0) blocked = line.substr(7);
      }
      ASSERT_FALSE(blocked.empty()) << task.path();
      ++threads;
      if (name.find("tessera-signals") != std::string::npos) {
        ++signal_threads;
        continue;
      }
      const unsigned long long mask = std::stoull(blocked, nullptr, 16);
      EXPECT_EQ(mask & watched, watched) << "process " << process << ", thread " << task.path().filename().string()
                                         << " (" << name << ") takes signals: SigBlk" << blocked;
    }
    EXPECT_EQ(signal_threads, 1) << "process " << process;
  }
  EXPECT_GE(threads, 2 * ranks) << "each process has at least its main thread and the signal thread";
  kill(processes.back(), SIGTERM);  // not mpirun, which would kill the ranks itself
  EXPECT_EQ(wait_for(launcher), 130) << text("render.log");
}

INSTANTIATE_TEST_SUITE_P(Ranks, SignalMask, ::testing::Values(1, 2),
                         [](const auto& info) { return std::to_string(info.param) + "_ranks"; });

// Killed (SIGKILL) while a checkpoint is being written: the temporary file
// is left, the previous checkpoint is whole, and --resume auto continues
// from it to the uninterrupted image.
TEST_F(Resume, KilledWhileWritingACheckpointKeepsThePreviousOne) {
  const std::vector<std::string> settings = {"--size", "256", "--iterations", "60"};
  auto whole = render(settings);
  whole.insert(whole.end(), {"-o", "whole.exr"});
  ASSERT_EQ(run(whole), 0) << text("command.log");

  // Every iteration writes a checkpoint that grows with the L-BFGS history,
  // so most of the time goes to writing; poll for a temporary file and kill
  // at once. A kill that misses the write is tried again.
  bool killed_while_writing = false;
  for (int attempt = 0; attempt < 10 && !killed_while_writing; ++attempt) {
    for (const auto& entry : fs::directory_iterator(folder_))
      if (entry.path().filename().string().starts_with("part")) fs::remove(entry.path());
    auto command = render(settings);
    command.insert(command.end(), {"-o", "part.exr", "--checkpoint-every", "1"});
    pid_t child = spawn(command, "first.log");
    auto deadline = clock_type::now() + std::chrono::seconds(30);
    fs::path temporary;
    while (temporary.empty() && clock_type::now() < deadline) {
      if (io::list_checkpoints(folder_ / "part.exr").size() >= 2)
        for (const auto& entry : fs::directory_iterator(folder_))
          if (entry.path().filename().string().starts_with(".part.ckpt-")) temporary = entry.path();
    }
    kill(child, SIGKILL);
    wait_for(child);
    killed_while_writing = !temporary.empty() && fs::exists(temporary);
    // Whatever the kill hit, the newest checkpoint in place loads.
    auto checkpoints = io::list_checkpoints(folder_ / "part.exr");
    ASSERT_FALSE(checkpoints.empty());
    io::CheckpointReader reader(checkpoints.front());
    EXPECT_NO_THROW(reader.verify()) << checkpoints.front();
  }
  ASSERT_TRUE(killed_while_writing) << "no kill landed inside a checkpoint write in 10 attempts";

  auto second = render(settings);
  second.insert(second.end(), {"-o", "part.exr", "--resume", "auto"});
  ASSERT_EQ(run(second, "second.log"), 0) << text("second.log");
  EXPECT_NE(text("second.log").find("resuming from"), std::string::npos);
  EXPECT_LE(difference("part.exr", "whole.exr"), 1e-4);
}

// A job killed between two checkpoints runs the iterations after the older
// one again when it resumes; its JSON log still holds each iteration once.
TEST_F(Resume, KilledBetweenCheckpointsLogsEachIterationOnce) {
  auto first = render({"--size", "200", "--iterations", "150"});
  first.insert(first.end(), {"-o", "part.exr", "--checkpoint-every", "5", "--log-json", "log.jsonl"});
  pid_t child = spawn(first, "first.log");
  ASSERT_TRUE(wait_for_log("log.jsonl", [](const auto& line) { return line["iteration"] >= 7; })) << text("first.log");
  kill(child, SIGKILL);
  wait_for(child);
  ASSERT_FALSE(io::list_checkpoints(folder_ / "part.exr").empty());

  auto second = render({"--size", "200", "--iterations", "150"});
  second.insert(second.end(), {"-o", "part.exr", "--resume", "auto", "--log-json", "log.jsonl"});
  ASSERT_EQ(run(second, "second.log"), 0) << text("second.log");
  std::vector<int> logged;
  for (const auto& line : log_lines("log.jsonl")) logged.push_back(line["iteration"]);
  std::vector<int> each(150);
  std::iota(each.begin(), each.end(), 1);
  EXPECT_EQ(logged, each) << text("second.log");
}

// A checkpoint cut short, with a flipped byte, or from another model: one
// clear line, exit 1, and no render (no output written).
TEST_F(Resume, DamagedOrForeignCheckpointsAreRefused) {
  const std::vector<std::string> settings = {"--size", "128", "--iterations", "10"};
  auto first = render(settings);
  first.insert(first.end(), {"-o", "first.png", "--checkpoint-every", "5", "--keep-checkpoints"});
  ASSERT_EQ(run(first), 0) << text("command.log");
  fs::path good = io::checkpoint_path(folder_ / "first.png", 1, 5);
  ASSERT_TRUE(fs::exists(good));
  std::ifstream in(good, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());

  auto refused = [&](const std::string& checkpoint, const std::string& says) {
    auto command = render(settings);
    command.insert(command.end(), {"-o", "second.png", "--resume", checkpoint});
    int code = run(command, "second.log");
    std::string output = text("second.log");
    EXPECT_EQ(code, 1) << output;
    EXPECT_NE(output.find(checkpoint), std::string::npos) << output;
    EXPECT_NE(output.find(says), std::string::npos) << output;
    EXPECT_EQ(std::count(output.begin(), output.end(), '\n'), 1) << output;
    EXPECT_FALSE(fs::exists(folder_ / "second.png")) << checkpoint;
  };
  for (double fraction : {0.05, 0.5, 0.95}) {
    std::string name = "cut" + std::to_string(int(fraction * 100)) + ".h5";
    std::ofstream(folder_ / name, std::ios::binary).write(bytes.data(), std::streamsize(fraction * bytes.size()));
    refused(name, "cut short");
  }
  // A byte in the middle of the image's values.
  std::string flipped = bytes;
  flipped[flipped.size() / 2] = char(flipped[flipped.size() / 2] ^ 0x01);
  std::ofstream(folder_ / "flipped.h5", std::ios::binary).write(flipped.data(), std::streamsize(flipped.size()));
  refused("flipped.h5", "flipped.h5");

  // The same render with other weights and model: refused, naming both.
  ASSERT_EQ(run({tessera(), "models", "import", (testing::fixture_dir() / "weights/vgg19_prefix_zip.pth").string(),
                 "--arch", "vgg16", "-o", "vgg16.h5"}),
            0);
  auto other = render(settings);
  other.insert(other.end(), {"-o", "other.png", "--checkpoint-every", "5", "--keep-checkpoints"});
  for (auto& word : other)
    if (word == "weights.h5") word = "vgg16.h5";
  ASSERT_EQ(run(other), 0) << text("command.log");
  refused(io::checkpoint_path("other.png", 1, 5).string(), "model: saved 'vgg16', now 'vgg19'");
}

// A finished render removes its checkpoints (a later render of the output
// with other settings would find them in its way); --keep-checkpoints keeps
// them.
TEST_F(Resume, FinishedRenderRemovesItsCheckpoints) {
  auto command = render({"--size", "96", "--iterations", "6"});
  command.insert(command.end(), {"-o", "done.png", "--checkpoint-every", "2"});
  ASSERT_EQ(run(command), 0) << text("command.log");
  EXPECT_TRUE(fs::exists(folder_ / "done.png"));
  EXPECT_TRUE(io::list_checkpoints(folder_ / "done.png").empty());
  EXPECT_NE(text("command.log").find("removed 2 checkpoints"), std::string::npos) << text("command.log");
  command.push_back("--keep-checkpoints");
  ASSERT_EQ(run(command), 0) << text("command.log");
  EXPECT_EQ(io::list_checkpoints(folder_ / "done.png").size(), 2u);
}

// Every rank checks the options alike: a mistake is said once, not once
// per rank, and the ranks end on their own, without MPI_Abort.
TEST_F(Resume, MissingCheckpointIsSaidOnceOnTwoRanks) {
  auto command = render({"--size", "64", "--iterations", "2", "-o", "never.png", "--resume", "missing.h5"}, 2);
  int code = run(command, "missing.log");
  std::string output = text("missing.log");
  EXPECT_EQ(code, 1) << output;
  const std::string message = "checkpoint 'missing.h5' not found";
  auto first = output.find(message);
  ASSERT_NE(first, std::string::npos) << output;
  EXPECT_EQ(output.find(message, first + 1), std::string::npos) << output;
  EXPECT_EQ(output.find("MPI_ABORT"), std::string::npos) << output;
  EXPECT_FALSE(fs::exists(folder_ / "never.png"));
}

}  // namespace
}  // namespace tessera
