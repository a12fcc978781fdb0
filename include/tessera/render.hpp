// The render loop: targets from the content and style images, then
// `iterations` evaluations of the objective, each followed by an optimiser
// update of the image.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "tessera/backend.hpp"
#include "tessera/communicator.hpp"
#include "tessera/image.hpp"
#include "tessera/objective.hpp"
#include "tessera/optimizer.hpp"
#include "tessera/render_state.hpp"
#include "tessera/tiled_objective.hpp"

namespace tessera {

// Where the image starts: noise, the content, an image file (RenderInputs::
// init_image), or a given vector (RenderInputs::start: the previous scale's
// result, upsampled).
enum class InitKind { random, content, image, given };

struct RenderSettings {
  std::string model = "vgg19";
  ObjectiveSettings objective;
  std::string optimizer = "lbfgs";  // "lbfgs" or "adam"
  float learning_rate = 10.0f;      // Adam's; L-BFGS uses 1 as neural-style does
  int lbfgs_history = 100;
  LineSearch line_search = LineSearch::strong_wolfe;  // L-BFGS's; none: neural-style's fixed steps
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
  // InitKind::given: the whole planar image in the backbone's input domain
  // (rank 0 only, like the other images); or, where `start` is empty,
  // `local_start`: this rank's owned pixels, in its tiles' order, each tile
  // planar (the layout render_layout gives, as Renderer::local_image has).
  std::vector<float> start;
  std::vector<float> local_start;
  // Where set, L-BFGS keeps its history this way rather than as an
  // InnerProductHistory (the tests compare the two recursions).
  std::function<std::unique_ptr<LbfgsHistory>(Backend&, Communicator&, Shape, int capacity)> lbfgs_history;
};

// The tiles a Renderer makes of a width x height image for these settings,
// and the rank of each: the one place the render's layout is chosen.
struct RenderLayout {
  TileGrid grid;
  RankMap ranks;
};
RenderLayout render_layout(const RenderSettings& settings, int width, int height, int rank_count);

struct IterationReport {
  int iteration = 0;   // 1-based; iteration 1 is evaluated at the initial image
  int iterations = 0;  // planned total
  LossTerms losses;
  double seconds = 0.0;  // since the loop started
  double seconds_this_iteration = 0.0;
  int evaluations = 0;  // of the objective in this iteration (a line search makes more than one)
  std::vector<double> search_losses;  // the losses the line search evaluated, in order
  TiledObjective::Times times;  // of this iteration's last evaluation, on this rank
  // What this rank's communicator carried in this iteration: its
  // evaluations and the optimiser's step (not the render job's own
  // agreement on stopping, made after the report).
  CommunicationCounts communication;
};

class Renderer {
 public:
  Renderer(Backend& backend, Communicator& communicator, RenderSettings settings, RenderInputs inputs);
  ~Renderer();

  // Runs iterations up to settings.iterations (from the first not yet done,
  // after restore()); `on_iteration` is called after each evaluation and
  // update and may return false to stop early (the image keeps the updates
  // made so far). Returns the number of iterations done in all.
  int run(const std::function<bool(const IterationReport&)>& on_iteration);

  // Why run() stopped before its planned iterations, if it did, and whether
  // the optimiser had converged (news) rather than failed (a warning).
  const std::string& stop_reason() const { return stop_reason_; }
  bool converged() const { return converged_; }
  // The current image in RGB (with the content's colours when
  // original_colors), gathered from every rank: a collective call; ranks
  // other than 0 get an empty image.
  Image image() const;
  // The same image in horizontal strips of at most `rows` rows, top to
  // bottom: rank 0's `take` gets each strip (full width, RGB as image()
  // gives it), and no rank ever holds more of the image than a strip
  // beside its own pixels. A collective call; one exchange per strip.
  void image_strips(int rows, const std::function<void(const Image& strip)>& take) const;
  int width() const;
  int height() const;
  TiledObjective& objective() { return *objective_; }
  // The loss gradient at the current image, whole (rank 0; others get it
  // empty), without updating anything: a collective call.
  std::vector<float> gradient();
  // The current image as the backbone sees it (planar, input domain), whole
  // on rank 0, empty elsewhere: a collective call.
  std::vector<float> input_image() const { return gather_whole(image_); }
  // This rank's part of it: its tiles' owned pixels, in tile order, each
  // tile planar.
  std::vector<float> local_image() const;

  // --- checkpoints
  RenderState state() const;
  // Gathers the image ("image") and every optimiser vector to rank 0, one at
  // a time, and hands each, whole and planar, to `sink` there; the other
  // ranks pass an empty function. A collective call.
  using VectorSink = std::function<void(const std::string& name, std::span<const float> whole)>;
  void save(const VectorSink& sink) const;
  // Continues from a saved state: `source` (on rank 0) returns each named
  // vector whole; the vectors are scattered to this render's tiles, which
  // need not be those of the render that saved them. A collective call.
  using VectorSource = std::function<std::vector<float>(const std::string& name)>;
  void restore(const RenderState& state, const VectorSource& source);
  int iterations_done() const { return iterations_done_; }
  Backend& backend() { return backend_; }

 private:
  std::vector<float> to_input_domain(const Image& rgb) const;
  // Rows y0 .. y0 + rows of the image, planar in the input domain, as the
  // user sees them (RGB, the content's colours when original_colors).
  Image output_rows(const std::vector<float>& planar, int y0, int rows) const;
  // A rank-local vector (owned pixels) assembled into the whole planar image
  // on rank 0 (empty elsewhere): a collective call.
  std::vector<float> gather_whole(const Tensor& local) const;
  // Rank 0's whole planar vector, checked for size, into this rank's part.
  void scatter_whole(const std::vector<float>& whole, const std::string& name, Tensor& local);

  Backend& backend_;
  Communicator& communicator_;
  RenderSettings settings_;
  RenderInputs inputs_;
  ColorTransform to_input_, to_rgb_;
  std::unique_ptr<TiledObjective> objective_;
  std::unique_ptr<Optimizer> optimizer_;
  Tensor image_, gradient_;
  int iterations_done_ = 0;
  std::string stop_reason_;
  bool converged_ = false;
  // The loss and gradient_ are those at image_ (the optimiser's line search
  // evaluated there): the next iteration need not evaluate again.
  bool evaluated_here_ = false;
  LossTerms current_losses_;
};

// Luminance transfer (neural-style's -original_colors 1): the luminance of
// `styled` with the chrominance of `content` (YIQ), same size.
Image keep_original_colors(const Image& styled, const Image& content);

}  // namespace tessera
