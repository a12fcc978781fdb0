#include "tessera/benchmark.hpp"

#include <algorithm>
#include <random>

#include "tessera/error.hpp"
#include "tessera/model.hpp"
#include "tessera/render.hpp"

namespace tessera {
namespace {

Image random_image(int width, int height, std::mt19937_64& generator) {
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  Image image(width, height);
  for (auto& v : image.pixels) v = uniform(generator);
  return image;
}

}  // namespace

BenchmarkResult measure_render(Backend& backend, Communicator& communicator, const BenchmarkCase& c) {
  const Architecture& arch = architecture(c.model);
  WeightSet weights = random_weights(arch, c.seed);
  RenderSettings settings;
  settings.tile_rows = c.tile_rows;
  settings.tile_columns = c.tile_columns;
  settings.model = c.model;
  settings.objective.content_layers = {arch.default_content_layer};
  settings.objective.style_layers = arch.default_style_layers;
  settings.optimizer = c.optimizer;
  settings.lbfgs_history = c.lbfgs_history;
  settings.iterations = c.iterations + 1;  // the first one warms up
  settings.seed = c.seed;
  std::mt19937_64 generator(c.seed + 1);
  RenderInputs inputs;
  inputs.weights = &weights;
  inputs.content = random_image(c.width, c.height, generator);
  inputs.styles.push_back(random_image(c.width, c.height, generator));
  Renderer renderer(backend, communicator, settings, std::move(inputs));
  weights = WeightSet{};  // the backend holds its own copy now

  BenchmarkResult result;
  double warm_up_seconds = 0.0, total_seconds = 0.0;
  int done = 0;
  renderer.run([&](const IterationReport& r) {
    if (r.iteration == 1) {
      warm_up_seconds = r.seconds;
      result.initial_loss = r.losses.total();
    }
    result.final_loss = r.losses.total();
    if (r.iteration > 1) {
      result.evaluations += r.evaluations;
      result.collectives += double(r.communication.collectives);
      result.collective_bytes += double(r.communication.collective_bytes);
      result.collective_seconds += r.communication.collective_seconds;
      result.messages += double(r.communication.messages);
      result.message_bytes += double(r.communication.message_bytes);
    }
    total_seconds = r.seconds;
    done = r.iteration;
    return true;
  });
  if (done < settings.iterations)
    fail("the benchmark render stopped after ", done, " iterations: ", renderer.stop_reason());
  result.seconds = total_seconds - warm_up_seconds;
  for (double* per_iteration : {&result.evaluations, &result.collectives, &result.collective_bytes,
                                &result.collective_seconds, &result.messages, &result.message_bytes})
    *per_iteration /= std::max(1, c.iterations);
  result.flops = renderer.objective().flops_per_evaluation() * c.iterations;
  result.grid = renderer.objective().grid();
  return result;
}

}  // namespace tessera
