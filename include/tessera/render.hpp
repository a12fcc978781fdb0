// The render loop: targets from the content and style images, then
// `iterations` evaluations of the objective, each followed by an optimiser
// update of the image.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tessera/backend.hpp"
#include "tessera/communicator.hpp"
#include "tessera/image.hpp"
#include "tessera/objective.hpp"
#include "tessera/optimizer.hpp"
#include "tessera/tiled_objective.hpp"

namespace tessera {

enum class InitKind { random, content, image };

struct RenderSettings {
  std::string model = "vgg19";
  ObjectiveSettings objective;
  std::string optimizer = "lbfgs";  // "lbfgs" or "adam"
  float learning_rate = 10.0f;      // Adam's; L-BFGS uses 1 as neural-style does
  int lbfgs_history = 100;
  int iterations = 1000;
  std::uint64_t seed = 0;
  InitKind init = InitKind::random;
  bool original_colors = false;
  // Tiles (rows x columns) and their halo in pixels; -1: the exact halo
  // from the receptive field of the deepest layer in use.
  int tile_rows = 1;
  int tile_columns = 1;
  int halo_px = -1;
};

struct RenderInputs {
  const WeightSet* weights = nullptr;  // needed only while the Renderer is constructed
  Image content;                  // at the output size
  std::vector<Image> styles;      // already scaled (style scale)
  std::vector<float> blend_weights;
  std::optional<Image> init_image;  // at the output size, for InitKind::image
};

struct IterationReport {
  int iteration = 0;   // 1-based; iteration 1 is evaluated at the initial image
  int iterations = 0;  // planned total
  LossTerms losses;
  double seconds = 0.0;  // since the loop started
  double seconds_this_iteration = 0.0;
  TiledObjective::Times times;  // of this iteration's evaluation, on this rank
};

class Renderer {
 public:
  Renderer(Backend& backend, Communicator& communicator, RenderSettings settings, RenderInputs inputs);
  ~Renderer();

  // Runs up to settings.iterations iterations; `on_iteration` is called after
  // each evaluation and may return false to stop early (the image keeps the
  // updates made so far). Returns the number of iterations done.
  int run(const std::function<bool(const IterationReport&)>& on_iteration);

  // Why run() stopped before its planned iterations, if it did.
  const std::string& stop_reason() const { return stop_reason_; }
  // The current image in RGB (with the content's colours when
  // original_colors), gathered from every rank: a collective call; ranks
  // other than 0 get an empty image.
  Image image() const;
  TiledObjective& objective() { return *objective_; }
  // The loss gradient at the current image, whole (rank 0; others get it
  // empty), without updating anything: a collective call.
  std::vector<float> gradient();
  Backend& backend() { return backend_; }

 private:
  std::vector<float> to_input_domain(const Image& rgb) const;
  // A rank-local vector (owned pixels) assembled into the whole planar image
  // on rank 0 (empty elsewhere): a collective call.
  std::vector<float> gather_whole(const Tensor& local) const;

  Backend& backend_;
  Communicator& communicator_;
  RenderSettings settings_;
  RenderInputs inputs_;
  ColorTransform to_input_, to_rgb_;
  std::unique_ptr<TiledObjective> objective_;
  std::unique_ptr<Optimizer> optimizer_;
  Tensor image_, gradient_;
  std::string stop_reason_;
};

// Luminance transfer (neural-style's -original_colors 1): the luminance of
// `styled` with the chrominance of `content` (YIQ), same size.
Image keep_original_colors(const Image& styled, const Image& content);

}  // namespace tessera
