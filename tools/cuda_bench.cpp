// tessera-cuda-bench: `tessera bench`'s measurement (the same Renderer on
// seeded random weights and images, one warm-up iteration, then K timed)
// in a binary that links only the core and the backends. A GPU machine
// without Debian's I/O and MPI libraries runs this one; its JSON has the
// same keys as `tessera bench --json`, so the two compare line for line.
//
//   tessera-cuda-bench [--backend cuda] [--model vgg19] [--size 512|WxH] [--iterations 10]
//                      [--optimizer lbfgs|adam] [--precision f32|bf16] [--tiles RxC] [--seed 0]
#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include "tessera/backend.hpp"
#include "tessera/benchmark.hpp"
#include "tessera/communicator.hpp"
#include "tessera/error.hpp"
#include "tessera/size.hpp"
#include "tessera/tiling.hpp"

namespace {

using namespace tessera;

struct Options {
  std::string backend = "cuda", model = "vgg19", size = "512", optimizer = "lbfgs", precision = "f32", tiles = "1x1";
  int iterations = 10;
  std::uint64_t seed = 0;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::puts("tessera-cuda-bench [--backend cuda] [--model vgg19] [--size 512|WxH] [--iterations 10]\n"
                "                   [--optimizer lbfgs|adam] [--precision f32|bf16] [--tiles RxC] [--seed 0]");
      std::exit(0);
    }
    if (i + 1 >= argc) fail(flag, " needs a value");
    std::string value = argv[++i];
    if (flag == "--backend") o.backend = value;
    else if (flag == "--model") o.model = value;
    else if (flag == "--size") o.size = value;
    else if (flag == "--optimizer") o.optimizer = value;
    else if (flag == "--precision") o.precision = value;
    else if (flag == "--tiles") o.tiles = value;
    else if (flag == "--iterations") o.iterations = std::stoi(value);
    else if (flag == "--seed") o.seed = std::stoull(value);
    else fail("unknown option ", flag, " (see --help)");
  }
  if (o.iterations < 1) fail("--iterations must be at least 1");
  return o;
}

int run(const Options& o) {
  BenchmarkCase c;
  parse_size(o.size).resolve(1, 1, c.width, c.height);
  c.model = o.model;
  c.optimizer = o.optimizer;
  c.iterations = o.iterations;
  c.seed = o.seed;
  parse_tile_grid(o.tiles, c.tile_rows, c.tile_columns);
  auto backend = make_backend(o.backend);
  backend->set_precision(parse_precision(o.precision));
  SingleProcess communicator;
  BenchmarkResult measured = measure_render(*backend, communicator, c);
  const int width = c.width, height = c.height;
  const double seconds = measured.seconds, flops = measured.flops;
  const double initial_loss = measured.initial_loss, final_loss = measured.final_loss;
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const auto& grid = measured.grid;
  std::printf(
      "{\"model\": \"%s\", \"size\": \"%dx%d\", \"backend\": \"%s\", \"precision\": \"%s\", \"optimizer\": \"%s\", "
      "\"iterations\": %d, \"tiles\": \"%dx%d\", \"initial_loss\": %.9g, \"final_loss\": %.9g, \"seconds\": %.6f, "
      "\"seconds_per_iteration\": %.6f, \"iterations_per_minute\": %.3f, \"gflops\": %.3f, "
      "\"gflop_per_iteration\": %.3f, \"peak_rss_bytes\": %lld, \"peak_device_bytes\": %zu, \"device\": \"%s\"}\n",
      o.model.c_str(), width, height, backend->name().c_str(), o.precision.c_str(), o.optimizer.c_str(), o.iterations,
      grid.rows, grid.columns, initial_loss, final_loss, seconds, seconds / o.iterations, 60.0 * o.iterations / seconds,
      flops / seconds / 1e9, flops / o.iterations / 1e9, (long long)usage.ru_maxrss * 1024,
      backend->peak_device_bytes(), backend->describe().empty() ? "" : backend->describe().front().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse(argc, argv));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tessera-cuda-bench: %s\n", e.what());
    return 1;
  }
}
