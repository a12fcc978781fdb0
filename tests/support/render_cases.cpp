#include "support/render_cases.hpp"

#include <gtest/gtest.h>

#include <cmath>

#include "support/golden.hpp"
#include "support/test_support.hpp"
#include "tessera/backend.hpp"

namespace tessera::testing {

const RenderCase kVggCase{"vgg19", 3, {"relu2_1"}, {"relu1_1", "relu2_1"}, 71, 53, 1e3f};
const RenderCase kNinCase{"nin", 4, {"relu3"}, {"relu0", "relu3"}, 151, 133, 1e3f};

Image seeded_rgb(int width, int height, std::uint64_t seed) {
  Image image(width, height);
  image.pixels = uniform_vector(seed, image.pixels.size(), 0.0f, 1.0f);
  return image;
}

std::unique_ptr<Renderer> case_renderer(const RenderCase& c, Backend& backend, Communicator& communicator,
                                        const std::string& optimizer, int rows, int columns, int halo_px,
                                        int iterations, int lbfgs_history, LineSearch line_search,
                                        HistoryFactory history) {
  WeightSet weights = synthetic_weights(c.model, c.convs);
  RenderSettings settings;
  settings.model = c.model;
  settings.objective.content_layers = c.content;
  settings.objective.style_layers = c.style;
  settings.objective.style_weight = c.style_weight;
  settings.optimizer = optimizer;
  settings.learning_rate = 5.1f;  // grey levels: 0.02 in the synthetic weights' identity input units
  settings.lbfgs_history = lbfgs_history;
  settings.line_search = line_search;
  settings.iterations = iterations;
  settings.init = InitKind::content;
  settings.tile_rows = rows;
  settings.tile_columns = columns;
  settings.halo_px = halo_px;
  RenderInputs inputs;
  inputs.weights = &weights;
  inputs.content = seeded_rgb(c.width, c.height, 71);
  inputs.styles.push_back(seeded_rgb(c.width - 9, c.height + 5, 72));
  inputs.lbfgs_history = std::move(history);
  if (communicator.rank() != 0) {
    // Only rank 0 holds pixels; the renderer scatters what each rank needs.
    inputs.content.pixels.clear();
    inputs.styles.back().pixels.clear();
  }
  return std::make_unique<Renderer>(backend, communicator, settings, std::move(inputs));
}

HistoryFactory tandem_history(std::shared_ptr<TandemRecord> record) {
  return [record](Backend& backend, Communicator& communicator, Shape shape, int capacity) {
    return std::make_unique<TandemHistory>(backend,
                                           std::make_unique<InnerProductHistory>(backend, communicator, shape, capacity),
                                           std::make_unique<TwoLoopHistory>(backend, communicator, shape, capacity),
                                           record);
  };
}

Image render_case(const RenderCase& c, Communicator& communicator, const std::string& optimizer, int rows,
                  int columns, int halo_px, int iterations) {
  auto backend = make_backend("cpu");
  auto renderer = case_renderer(c, *backend, communicator, optimizer, rows, columns, halo_px, iterations);
  EXPECT_EQ(renderer->run(nullptr), iterations) << renderer->stop_reason();
  return renderer->image();
}

double max_difference(const Image& a, const Image& b) {
  EXPECT_EQ(a.pixels.size(), b.pixels.size());
  if (a.pixels.size() != b.pixels.size()) return INFINITY;
  double worst = 0.0;
  for (std::size_t i = 0; i < a.pixels.size(); ++i) worst = std::max(worst, double(std::abs(a.pixels[i] - b.pixels[i])));
  return worst;
}

}  // namespace tessera::testing
