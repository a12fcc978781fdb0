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
#include <random>
#include <string>

#include "tessera/backend.hpp"
#include "tessera/communicator.hpp"
#include "tessera/error.hpp"
#include "tessera/render.hpp"
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

Image random_image(int width, int height, std::mt19937_64& generator) {
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  Image image(width, height);
  for (auto& v : image.pixels) v = uniform(generator);
  return image;
}

int run(const Options& o) {
  int width = 0, height = 0;
  parse_size(o.size).resolve(1, 1, width, height);
  const Architecture& arch = architecture(o.model);
  WeightSet weights = random_weights(arch, o.seed);
  auto backend = make_backend(o.backend);
  backend->set_precision(parse_precision(o.precision));
  SingleProcess communicator;
  RenderSettings settings;
  parse_tile_grid(o.tiles, settings.tile_rows, settings.tile_columns);
  settings.model = o.model;
  settings.objective.content_layers = {arch.default_content_layer};
  settings.objective.style_layers = arch.default_style_layers;
  settings.optimizer = o.optimizer;
  settings.iterations = o.iterations + 1;  // the first one warms up
  settings.seed = o.seed;
  std::mt19937_64 generator(o.seed + 1);
  RenderInputs inputs;
  inputs.weights = &weights;
  inputs.content = random_image(width, height, generator);
  inputs.styles.push_back(random_image(width, height, generator));
  Renderer renderer(*backend, communicator, settings, std::move(inputs));
  weights = WeightSet{};

  double warm_up_seconds = 0.0, total_seconds = 0.0, initial_loss = 0.0, final_loss = 0.0;
  int done = 0;
  renderer.run([&](const IterationReport& r) {
    if (r.iteration == 1) {
      warm_up_seconds = r.seconds;
      initial_loss = r.losses.total();
    }
    final_loss = r.losses.total();
    total_seconds = r.seconds;
    done = r.iteration;
    return true;
  });
  if (done < settings.iterations) fail("the benchmark render stopped after ", done, " iterations: ", renderer.stop_reason());
  const double seconds = total_seconds - warm_up_seconds;
  const double flops = renderer.objective().flops_per_evaluation() * o.iterations;
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const auto& grid = renderer.objective().grid();
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
