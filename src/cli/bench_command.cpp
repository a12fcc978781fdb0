// `tessera bench`: the real render loop on seeded random weights and images,
// timed after one warm-up iteration, and the 2016 study's table.
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <array>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include "cli/commands.hpp"
#include "cli/threads.hpp"
#include "comm/device_communicator.hpp"
#include "tessera/backend.hpp"
#include "tessera/benchmark.hpp"
#include "tessera/build_info.hpp"
#include "tessera/error.hpp"
#include "tessera/model.hpp"
#include "tessera/render.hpp"
#include "tessera/size.hpp"
#include "tessera/tiling.hpp"

namespace tessera::cli {
namespace {

struct BenchOptions {
  std::string model = "vgg19";
  std::vector<std::string> models;
  std::string size = "256";
  std::vector<std::string> sizes;
  int iterations = 10;
  std::string optimizer = "lbfgs";
  int lbfgs_history = 100;
  int threads = 0;
  std::string backend = "cpu";
  std::string precision = "f32";
  std::string tiles = "1x1";
  bool json = false;
  bool conv_peak = false;
  std::uint64_t seed = 0;
};

std::string cpu_model() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);)
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown CPU";
}

std::size_t peak_rss_bytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return std::size_t(usage.ru_maxrss) * 1024;
}

// One configuration, in this process.
nlohmann::json bench_one(const BenchOptions& o, const std::string& model, const std::string& size_text) {
  SizeRequest size = parse_size(size_text);
  int width = 0, height = 0;
  size.resolve(1, 1, width, height);  // a long side alone means a square
  auto backend = make_backend(o.backend);
  backend->set_threads(choose_threads(o.threads).threads);
  backend->set_precision(parse_precision(o.precision));
  // As a render: NCCL where each rank has a GPU of its own.
  std::string why_not_nccl;
  auto device_communicator = make_device_communicator(process_communicator(), *backend, why_not_nccl);
  Communicator& communicator = device_communicator ? *device_communicator : process_communicator();
  BenchmarkCase c;
  c.model = model;
  c.width = width;
  c.height = height;
  c.optimizer = o.optimizer;
  c.iterations = o.iterations;
  c.seed = o.seed;
  c.lbfgs_history = o.lbfgs_history;
  parse_tile_grid(o.tiles, c.tile_rows, c.tile_columns);
  BenchmarkResult measured = measure_render(*backend, communicator, c);
  const double seconds = measured.seconds, flops = measured.flops;
  const double initial_loss = measured.initial_loss, final_loss = measured.final_loss;
  // The halo's extra work: pixels computed over pixels owned.
  const TileGrid& grid = measured.grid;
  double grown_area = 0.0;
  for (const auto& tile : grid.tiles) grown_area += double(tile.grown.area());
  double extra_work = grown_area / (double(grid.width) * grid.height) - 1.0;
  double peak_rss = communicator.max(double(peak_rss_bytes()));
  return {{"model", model},
          {"size", fmt::format("{}x{}", width, height)},
          {"backend", backend->name()},
          {"precision", o.precision},
          {"initial_loss", initial_loss},
          {"final_loss", final_loss},
          {"optimizer", o.optimizer},
          {"threads", choose_threads(o.threads).threads},
          {"iterations", o.iterations},
          {"seconds", seconds},
          {"seconds_per_iteration", seconds / o.iterations},
          {"iterations_per_minute", 60.0 * o.iterations / seconds},
          {"gflops", flops / seconds / 1e9},
          {"gflop_per_iteration", flops / o.iterations / 1e9},
          {"peak_rss_bytes", std::size_t(peak_rss)},
          {"ranks", communicator.size()},
          {"tiles", fmt::format("{}x{}", grid.rows, grid.columns)},
          {"halo_px", grid.halo},
          {"halo_extra_work", extra_work},
          {"peak_device_bytes", backend->peak_device_bytes()},
          {"communicator", device_communicator ? "nccl" : communicator.size() > 1 ? "mpi" : "none"},
          {"lbfgs_history", o.lbfgs_history},
          {"evaluations_per_iteration", measured.evaluations},
          {"collectives_per_iteration", measured.collectives},
          {"collective_bytes_per_iteration", measured.collective_bytes},
          {"collective_seconds_per_iteration", measured.collective_seconds},
          {"messages_per_iteration", measured.messages},
          {"message_bytes_per_iteration", measured.message_bytes}};
}

// The rate oneDNN reaches on one large 3x3 convolution (256 -> 256 channels,
// 128x128, NHWC, ReLU fused), forward and backward-to-input: the ceiling the
// render loop is measured against.
nlohmann::json conv_peak(const BenchOptions& o) {
  auto backend = make_backend(o.backend);
  backend->set_threads(choose_threads(o.threads).threads);
  const int channels = 256, side = 128, repeats = 20;
  LayerSpec spec{LayerKind::conv, "peak", channels, channels, 3, 1, 1, false};
  std::mt19937_64 generator(o.seed);
  std::normal_distribution<float> normal(0.0f, 0.03f);
  ConvWeights weights{"peak", channels, channels, 3, 3, {}, std::vector<float>(channels, 0.01f)};
  weights.weight.resize(std::size_t(channels) * channels * 9);
  for (auto& w : weights.weight) w = normal(generator);
  Shape shape{channels, side, side};
  auto layer = backend->plan_convolution(spec, weights, shape, Layout::features);
  Tensor input = backend->allocate(shape, Layout::features), output = backend->allocate(shape, Layout::features);
  Tensor grad_out = backend->allocate(shape, Layout::features), grad_in = backend->allocate(shape, Layout::features);
  std::vector<float> values(shape.elements());
  for (auto& v : values) v = std::abs(normal(generator));
  backend->upload(values, input);
  layer->forward(input, output);  // warm-up
  using clock = std::chrono::steady_clock;
  auto start = clock::now();
  for (int i = 0; i < repeats; ++i) layer->forward(input, output);
  double forward_seconds = std::chrono::duration<double>(clock::now() - start).count() / repeats;
  start = clock::now();
  for (int i = 0; i < repeats; ++i) {
    backend->copy(output, grad_out);
    layer->backward(output, grad_out, grad_in);
  }
  double backward_seconds = std::chrono::duration<double>(clock::now() - start).count() / repeats;
  double flops = 2.0 * layer->forward_macs();
  return {{"convolution", fmt::format("3x3 {}->{} at {}x{}", channels, channels, side, side)},
          {"forward_gflops", flops / forward_seconds / 1e9},
          {"backward_data_gflops", flops / backward_seconds / 1e9}};
}

// Each configuration of a sweep runs in a child process, so that its peak
// memory is its own.
nlohmann::json bench_in_child(const BenchOptions& o, const std::string& model, const std::string& size) {
  std::vector<std::string> arguments = {"/proc/self/exe", "bench", "--json", "--model", model, "--size", size,
                                        "--iterations", std::to_string(o.iterations), "--optimizer", o.optimizer,
                                        "--lbfgs-history", std::to_string(o.lbfgs_history),
                                        "--threads", std::to_string(o.threads), "--backend", o.backend,
                                        "--precision", o.precision, "--tiles", o.tiles,
                                        "--seed", std::to_string(o.seed)};
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) fail("cannot create a pipe for the benchmark child");
  pid_t child = fork();
  if (child < 0) fail("cannot fork the benchmark child");
  if (child == 0) {
    dup2(pipe_fds[1], STDOUT_FILENO);
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    std::vector<char*> argv;
    for (auto& a : arguments) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv("/proc/self/exe", argv.data());
    _exit(127);
  }
  close(pipe_fds[1]);
  std::string text;
  std::array<char, 4096> buffer;
  for (ssize_t n; (n = read(pipe_fds[0], buffer.data(), buffer.size())) > 0;) text.append(buffer.data(), n);
  close(pipe_fds[0]);
  int status = 0;
  waitpid(child, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || text.empty())
    return {{"model", model}, {"size", size}, {"error", "failed (see the message above)"}};
  return nlohmann::json::parse(text);
}

// The 2016 study (Chainer; i5-4460 CPU, GTX 960 GPU): iterations per minute.
struct StudyFigure {
  const char* model;
  int size;
  double cpu, gpu;
};
constexpr StudyFigure kStudy[] = {{"vgg19", 64, 94.2, 847.8},   {"vgg19", 128, 71.4, 721.9},
                                  {"vgg19", 256, 32.0, 286.7},  {"nin", 128, 108.9, 980.0}};

std::string study_column(const std::string& model, const std::string& size, bool gpu) {
  for (const auto& s : kStudy)
    if (model == s.model && size == fmt::format("{}x{}", s.size, s.size)) return fmt::format("{:.1f}", gpu ? s.gpu : s.cpu);
  if (size == "512x512") return "crashed";
  return "-";
}

int run_bench(BenchOptions& o) {
  if (o.iterations < 1) fail("--iterations must be at least 1");
  if (o.optimizer != "lbfgs" && o.optimizer != "adam") fail("--optimizer must be lbfgs or adam");
  parse_precision(o.precision);
  bool sweep = !o.sizes.empty() || !o.models.empty();
  if (sweep && process_communicator().size() > 1) fail("--sizes/--models sweeps run in one process, not under mpirun");
  if (!sweep && !o.conv_peak) {
    auto result = bench_one(o, o.model, o.size);
    if (process_communicator().rank() != 0) return 0;
    if (o.json) {
      fmt::print("{}\n", result.dump());
      return 0;
    }
    fmt::print("{} {} {} {}, {} rank(s), {} tiles (halo {} px, {:.0f} % extra work): {:.1f} it/min, {:.3f} s/it, "
               "{:.1f} GFLOP/s, peak RSS {:.0f} MiB per rank\n",
               std::string(result["model"]), std::string(result["size"]), std::string(result["backend"]), o.precision,
               int(result["ranks"]), std::string(result["tiles"]), int(result["halo_px"]),
               100.0 * double(result["halo_extra_work"]), double(result["iterations_per_minute"]),
               double(result["seconds_per_iteration"]), double(result["gflops"]),
               double(result["peak_rss_bytes"]) / (1 << 20));
    return 0;
  }

  auto backend = make_backend(o.backend);
  backend->set_threads(choose_threads(o.threads).threads);
  if (!o.json) {
    fmt::print("# tessera bench: tessera {}, {}, CPU {}\n", build_info::version, backend->describe().front(),
               cpu_model());
    fmt::print("# optimizer {}, {} timed iterations after 1 warm-up, {}, neural-style's layers and weights,\n"
               "# seeded random weights and images; GFLOP/s counts convolutions forward and backward-to-input\n"
               "# and the Gram products (see README)\n",
               o.optimizer, o.iterations, o.precision);
  }
  if (o.conv_peak) {
    auto peak = conv_peak(o);
    if (o.json)
      fmt::print("{}\n", peak.dump());
    else
      fmt::print("conv peak ({}): forward {:.1f} GFLOP/s, backward-to-input {:.1f} GFLOP/s\n",
                 std::string(peak["convolution"]), double(peak["forward_gflops"]),
                 double(peak["backward_data_gflops"]));
    if (!sweep) return 0;
  }
  std::vector<std::string> models = o.models.empty() ? std::vector<std::string>{o.model} : o.models;
  std::vector<std::string> sizes = o.sizes.empty() ? std::vector<std::string>{o.size} : o.sizes;
  if (!o.json)
    fmt::print("{:<6} {:>9} {:>10} {:>9} {:>9} {:>10}  {:>12} {:>12}\n{:<6} {:>9} {:>10} {:>9} {:>9} {:>10}  {:>12} {:>12}\n",
               "model", "size", "it/min", "s/it", "GFLOP/s", "peak RSS", "2016 i5 CPU", "2016 GTX960", "", "px",
               "1/min", "s", "1e9/s", "MiB", "it/min", "it/min");
  for (const auto& model : models)
    for (const auto& size_text : sizes) {
      SizeRequest size = parse_size(size_text);
      int w = 0, h = 0;
      size.resolve(1, 1, w, h);
      auto r = bench_in_child(o, model, fmt::format("{}x{}", w, h));
      if (o.json) {
        fmt::print("{}\n", r.dump());
        continue;
      }
      std::string size_name = fmt::format("{}x{}", w, h);
      if (r.contains("error")) {
        fmt::print("{:<6} {:>9} {:>10}\n", model, size_name, "failed");
        continue;
      }
      fmt::print("{:<6} {:>9} {:>10.1f} {:>9.3f} {:>9.1f} {:>10.0f}  {:>12} {:>12}\n", model, size_name,
                 double(r["iterations_per_minute"]), double(r["seconds_per_iteration"]), double(r["gflops"]),
                 double(r["peak_rss_bytes"]) / (1 << 20), study_column(model, size_name, false),
                 study_column(model, size_name, true));
      std::fflush(stdout);
    }
  return 0;
}

}  // namespace

Command add_bench_command(CLI::App& app) {
  auto* command = app.add_subcommand("bench", "Time the render loop on seeded random weights and images");
  auto o = std::make_shared<BenchOptions>();
  command->add_option("--model", o->model, "vgg19, vgg16 or nin")->capture_default_str();
  command->add_option("--models", o->models, "Several models for the table, comma separated")->delimiter(',');
  command->add_option("--size", o->size, "N (square) or WxH")->capture_default_str();
  command->add_option("--sizes", o->sizes, "Several sizes for the table: 64,128,256,512,1024")->delimiter(',');
  command->add_option("--iterations", o->iterations, "Timed iterations (after one warm-up)")->capture_default_str();
  command->add_option("--optimizer", o->optimizer, "lbfgs or adam")->capture_default_str();
  command->add_option("--lbfgs-history", o->lbfgs_history, "L-BFGS history pairs")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  command->add_option("--threads", o->threads, "CPU threads (0: all cores)")->capture_default_str();
  command->add_option("--backend", o->backend, "cpu")->capture_default_str();
  command->add_option("--precision", o->precision, "Activation storage: f32 or bf16")->capture_default_str();
  command->add_option("--tiles", o->tiles, "Tile grid ROWSxCOLUMNS (also under mpirun)")->capture_default_str();
  command->add_option("--seed", o->seed, "Seed of the random weights and images")->capture_default_str();
  command->add_flag("--json", o->json, "One JSON object per run");
  command->add_flag("--conv-peak", o->conv_peak, "Also time one large 3x3 convolution: the ceiling");
  return [o] { return run_bench(*o); };
}

}  // namespace tessera::cli
