#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>

#include "tessera/box_copy.hpp"
#include "tessera/error.hpp"
#include "tessera/model.hpp"
#include "tessera/render.hpp"

namespace tessera {

Renderer::Renderer(Backend& backend, Communicator& communicator, RenderSettings settings, RenderInputs inputs)
    : backend_(backend), communicator_(communicator), settings_(std::move(settings)), inputs_(std::move(inputs)) {
  if (!inputs_.weights) fail("internal: no weights given to the renderer");
  if (inputs_.content.width < 1 || inputs_.content.height < 1) fail("the content image is empty");
  if (settings_.iterations < 0) fail("iterations must be zero or more, got ", settings_.iterations);
  const Architecture& arch = architecture(settings_.model);
  to_input_ = inputs_.weights->input;
  to_rgb_ = to_input_.inverse();
  const int width = inputs_.content.width, height = inputs_.content.height;
  // Rank 0 holds the images' pixels; the others know only their sizes and
  // receive the parts they need.
  const bool root = communicator_.rank() == 0;
  if (root && inputs_.content.pixels.size() != 3 * std::size_t(width) * height)
    fail("internal: rank 0 needs the content image's pixels");

  RenderLayout layout = render_layout(settings_, width, height, communicator_.size());
  objective_ = std::make_unique<TiledObjective>(backend_, arch, *inputs_.weights, std::move(layout.grid),
                                                std::move(layout.ranks), settings_.objective, communicator_);
  if (!settings_.objective.style_layers.empty()) {
    std::vector<StyleImage> styles;
    for (const auto& style : inputs_.styles)
      styles.push_back({style.width, style.height, root ? to_input_domain(style) : std::vector<float>()});
    std::vector<float> blend = inputs_.blend_weights;
    if (blend.empty()) blend.assign(styles.size(), 1.0f);
    objective_->set_style_targets(tiled_style_targets(backend_, arch, *inputs_.weights, settings_.objective.pooling,
                                                      settings_.objective.style_layers, styles, blend,
                                                      settings_.tile_rows, settings_.tile_columns, communicator_));
  }
  inputs_.styles = {};  // rank 0's whole style images: their targets are set

  // After the style targets, so that their (temporary) networks never
  // share memory with the render's activations.
  if (!settings_.objective.content_layers.empty())
    objective_->set_content(scatter_boxes(communicator_, root ? to_input_domain(inputs_.content) : std::vector<float>(),
                                          width, height, objective_->tiled_image().grown_boxes(),
                                          objective_->ranks()));

  // The starting image, made whole on rank 0 (the same on any rank count)
  // and scattered: each rank keeps its tiles' owned pixels. A start given
  // in parts is already where it belongs.
  const bool given_in_parts = settings_.init == InitKind::given && !inputs_.local_start.empty();
  std::vector<float> start;
  if (root && !given_in_parts) {
    switch (settings_.init) {
      case InitKind::content:
        start = to_input_domain(inputs_.content);
        break;
      case InitKind::image:
        if (!inputs_.init_image) fail("internal: init image missing");
        if (inputs_.init_image->width != width || inputs_.init_image->height != height)
          fail("internal: init image has the wrong size");
        start = to_input_domain(*inputs_.init_image);
        break;
      case InitKind::given:
        if (inputs_.start.size() != 3 * std::size_t(width) * height)
          fail("internal: the given start image has ", inputs_.start.size(), " values for ", width, "x", height);
        start = std::move(inputs_.start);
        break;
      case InitKind::random: {
        // neural-style: normal noise of standard deviation 0.001 in the
        // backbone's input domain, from the seed.
        std::mt19937_64 generator(settings_.seed);
        std::normal_distribution<float> normal(0.0f, 0.001f);
        start.resize(3 * std::size_t(width) * height);
        for (auto& v : start) v = normal(generator);
        break;
      }
    }
  }
  Shape local{int(objective_->local_elements()), 1, 1};
  image_ = backend_.allocate(local, Layout::planar, Backend::Contents::unset);
  std::vector<float> owned =
      given_in_parts ? std::move(inputs_.local_start)
                     : objective_->tiled_image().scatter(communicator_, start);
  start = {};
  if (owned.size() != objective_->local_elements())
    fail("internal: the start image has ", owned.size(), " values on rank ", communicator_.rank(), " for ",
         objective_->local_elements());
  backend_.upload(owned, image_);
  gradient_ = backend_.allocate(local, Layout::planar, Backend::Contents::unset);
  inputs_.weights = nullptr;  // planned and targets set: the caller may free them
  // Rank 0 holds no whole image through the render (at 8K each is 400 MB),
  // except the content where the original colours are put back at the end.
  inputs_.init_image.reset();
  inputs_.start = {};
  inputs_.local_start = {};
  if (!settings_.original_colors) inputs_.content = Image();

  // Image units: the input domain's change for a change of 1 in every RGB
  // channel (255 for Caffe's weights, about 4.4 for torchvision's).
  double unit = 0.0;
  for (const auto& row : to_input_.matrix)
    for (float v : row) unit += double(v) * v;
  unit = std::sqrt(unit / 3.0);
  if (settings_.optimizer == "lbfgs") {
    LbfgsSettings lbfgs;
    lbfgs.history = settings_.lbfgs_history;
    lbfgs.line_search = settings_.line_search;
    // The first step moves the image by about 2.5 grey levels whatever the
    // size and the weights, and no search starts more than 25 away.
    lbfgs.first_move = 0.01 * unit;
    lbfgs.max_move = 0.1 * unit;
    std::unique_ptr<LbfgsHistory> history;
    if (inputs_.lbfgs_history) history = inputs_.lbfgs_history(backend_, communicator_, local, lbfgs.history);
    optimizer_ = std::make_unique<Lbfgs>(backend_, communicator_, local, lbfgs, std::move(history));
  } else if (settings_.optimizer == "adam") {
    // The learning rate is in grey levels (1/255 of the RGB range): Adam's
    // first step moves each value by about that much, whatever the weights'
    // input convention.
    AdamSettings adam;
    adam.learning_rate = float(settings_.learning_rate * unit / 255.0);
    optimizer_ = std::make_unique<Adam>(backend_, local, adam);
  } else {
    fail("unknown optimizer '", settings_.optimizer, "' (lbfgs or adam)");
  }
}

Renderer::~Renderer() = default;

RenderLayout render_layout(const RenderSettings& settings, int width, int height, int rank_count) {
  // Boundaries on the total stride of the layers in use, the exact halo
  // unless the user asked for a smaller one.
  const Architecture& arch = architecture(settings.model);
  std::vector<std::string> layers = settings.objective.layers();
  for (const auto& layer : layers)
    if (arch.index_of(layer) < 0) fail("model ", arch.name, " has no layer '", layer, "'");
  TileGrid grid =
      TileGrid::for_layers(arch, layers, width, height, settings.tile_rows, settings.tile_columns, settings.halo_px);
  RankMap ranks = RankMap::contiguous(int(grid.tiles.size()), rank_count);
  return {std::move(grid), std::move(ranks)};
}

std::vector<float> Renderer::to_input_domain(const Image& rgb) const {
  std::vector<float> planar(rgb.pixels.size());
  const std::size_t plane = rgb.plane_size();
  for (std::size_t p = 0; p < plane; ++p) {
    auto v = to_input_.apply({rgb.pixels[p], rgb.pixels[plane + p], rgb.pixels[2 * plane + p]});
    planar[p] = v[0];
    planar[plane + p] = v[1];
    planar[2 * plane + p] = v[2];
  }
  return planar;
}

int Renderer::run(const std::function<bool(const IterationReport&)>& on_iteration) {
  using clock = std::chrono::steady_clock;
  auto start = clock::now();
  auto last = start;
  int& done = iterations_done_;
  stop_reason_.clear();
  for (int k = done + 1; k <= settings_.iterations; ++k) {
    IterationReport report;
    const CommunicationCounts counts_before = communicator_.counts();
    report.iteration = k;
    report.iterations = settings_.iterations;
    if (!evaluated_here_) {
      current_losses_ = objective_->evaluate(image_, gradient_);
      report.evaluations = 1;
    }
    report.losses = current_losses_;
    if (!std::isfinite(report.losses.total())) {
      report.times = objective_->last_times();
      stop_reason_ = "the loss is not finite (weights too large for these images?)";
      break;
    }
    double loss = report.losses.total();
    auto evaluate = [this](const Tensor& x, Tensor& gradient) {
      current_losses_ = objective_->evaluate(x, gradient);
      return current_losses_.total();
    };
    StepReport step = optimizer_->step(image_, gradient_, loss, evaluate);
    evaluated_here_ = step.evaluated_here;
    report.evaluations += step.evaluations;
    report.search_losses = std::move(step.losses);
    report.times = objective_->last_times();
    report.communication = communicator_.counts().since(counts_before);
    auto now = clock::now();
    report.seconds = std::chrono::duration<double>(now - start).count();
    report.seconds_this_iteration = std::chrono::duration<double>(now - last).count();
    last = now;
    if (step.progressed) done = k;
    bool go_on = on_iteration ? on_iteration(report) : true;
    if (!step.progressed) {
      stop_reason_ = optimizer_->stop_reason();
      if (stop_reason_.empty()) stop_reason_ = optimizer_->name() + " stopped";
      converged_ = optimizer_->converged();
      break;
    }
    if (!go_on) {
      stop_reason_ = "interrupted";
      break;
    }
  }
  return done;
}

std::vector<float> Renderer::gather_whole(const Tensor& local_tensor) const {
  std::vector<float> local(local_tensor.elements());
  backend_.download(local_tensor, local);
  return objective_->tiled_image().gather(communicator_, local);
}

void Renderer::scatter_whole(const std::vector<float>& whole, const std::string& name, Tensor& local) {
  const TileGrid& grid = objective_->grid();
  if (communicator_.rank() == 0 && whole.size() != 3 * std::size_t(grid.width) * grid.height)
    fail("saved vector '", name, "' has ", whole.size(), " values; this render's ", grid.width, "x", grid.height,
         " image needs ", 3 * std::size_t(grid.width) * grid.height);
  auto owned = objective_->tiled_image().scatter(communicator_, whole);
  if (owned.size() != local.elements()) fail("internal: scattered ", owned.size(), " values for ", local.elements());
  backend_.upload(owned, local);
}

RenderState Renderer::state() const {
  return {iterations_done_, optimizer_->name(), optimizer_->state()};
}

void Renderer::save(const VectorSink& sink) const {
  const bool root = communicator_.rank() == 0;
  auto pass = [&](const std::string& name, const Tensor& local) {
    std::vector<float> whole = gather_whole(local);
    if (root) sink(name, whole);
  };
  pass("image", image_);
  for (const auto& name : optimizer_->state().vectors) pass(name, optimizer_->vector(name));
}

void Renderer::restore(const RenderState& state, const VectorSource& source) {
  evaluated_here_ = false;  // the image is about to change
  if (state.optimizer != optimizer_->name())
    fail("the saved render used ", state.optimizer, ", this one ", optimizer_->name());
  if (state.iterations_done < 0) fail("the saved render has done ", state.iterations_done, " iterations");
  const bool root = communicator_.rank() == 0;
  auto fetch = [&](const std::string& name, Tensor& local) {
    scatter_whole(root ? source(name) : std::vector<float>(), name, local);
  };
  fetch("image", image_);
  optimizer_->restore(state.optimizer_state, fetch);
  iterations_done_ = state.iterations_done;
}

std::vector<float> Renderer::gradient() {
  objective_->evaluate(image_, gradient_);
  return gather_whole(gradient_);
}

std::vector<float> Renderer::local_image() const {
  std::vector<float> local(image_.elements());
  backend_.download(image_, local);
  return local;
}

Image Renderer::image() const {
  std::vector<float> planar = gather_whole(image_);
  if (communicator_.rank() != 0) return {};
  return output_rows(planar, 0, height());
}

int Renderer::width() const { return objective_->grid().width; }
int Renderer::height() const { return objective_->grid().height; }

Image Renderer::output_rows(const std::vector<float>& planar, int y0, int rows) const {
  Image out(width(), rows);
  const std::size_t plane = out.plane_size();
  if (planar.size() != 3 * plane) fail("internal: ", planar.size(), " values for ", rows, " rows");
  for (std::size_t p = 0; p < plane; ++p) {
    auto v = to_rgb_.apply({planar[p], planar[plane + p], planar[2 * plane + p]});
    out.pixels[p] = v[0];
    out.pixels[plane + p] = v[1];
    out.pixels[2 * plane + p] = v[2];
  }
  if (!settings_.original_colors) return out;
  // The content's rows beside them (the content image is whole on rank 0).
  const Image& content = inputs_.content;
  Image content_rows(width(), rows);
  for (int c = 0; c < 3; ++c)
    std::copy_n(content.pixels.begin() + c * content.plane_size() + std::size_t(y0) * width(), plane,
                content_rows.pixels.begin() + c * plane);
  return keep_original_colors(out, content_rows);
}

void Renderer::image_strips(int rows, const std::function<void(const Image& strip)>& take) const {
  std::vector<float> local(image_.elements());
  backend_.download(image_, local);
  const TiledImage& tiled = objective_->tiled_image();
  const std::vector<Box> owned = tiled.owned_boxes();
  const RankMap to_root = RankMap::contiguous(1, communicator_.size());
  rows = std::max(1, rows);
  for (int y0 = 0; y0 < height(); y0 += rows) {
    const int y1 = std::min(height(), y0 + rows);
    std::vector<float> strip =
        copy_boxes(communicator_, 3, owned, tiled.ranks(), local, {Box{0, y0, width(), y1}}, to_root);
    if (communicator_.rank() == 0) take(output_rows(strip, y0, y1 - y0));
  }
}

Image keep_original_colors(const Image& styled, const Image& content) {
  if (styled.width != content.width || styled.height != content.height)
    fail("internal: original colours need images of the same size");
  // YIQ (NTSC): Y from the styled image, I and Q from the content.
  Image out(styled.width, styled.height);
  const std::size_t plane = styled.plane_size();
  for (std::size_t p = 0; p < plane; ++p) {
    float sr = styled.pixels[p], sg = styled.pixels[plane + p], sb = styled.pixels[2 * plane + p];
    float cr = content.pixels[p], cg = content.pixels[plane + p], cb = content.pixels[2 * plane + p];
    float y = 0.299f * sr + 0.587f * sg + 0.114f * sb;
    float i = 0.596f * cr - 0.274f * cg - 0.322f * cb;
    float q = 0.211f * cr - 0.523f * cg + 0.312f * cb;
    out.pixels[p] = y + 0.956f * i + 0.621f * q;
    out.pixels[plane + p] = y - 0.272f * i - 0.647f * q;
    out.pixels[2 * plane + p] = y - 1.106f * i + 1.703f * q;
  }
  return out;
}

}  // namespace tessera
