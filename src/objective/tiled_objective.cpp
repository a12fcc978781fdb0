#include "tessera/tiled_objective.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "tessera/error.hpp"

namespace tessera {

// One planned network per distinct grown-box shape (at most nine for any
// grid: first, inner and last tiles in each direction), shared by the tiles
// of that shape; `resident` is the tile whose activations it holds now.
struct TiledObjective::Planned {
  std::unique_ptr<Network> network;
  std::vector<int> content_taps, style_taps;
  std::vector<std::unique_ptr<GramOperator>> grams;
  int resident = -1;
};

struct TiledObjective::LocalTile {
  Tile tile;
  std::vector<Box> blocks;  // the reduction blocks it owns, in the grid's order
  Planned* planned = nullptr;
  Tensor grown_image, grown_gradient;
  std::vector<Tensor> content_targets;
};

namespace {

// `box` in the coordinates of `frame` (a tile's grown or owned box).
Box window_in(const Box& box, const Box& frame) { return box.shift(-frame.x0, -frame.y0); }

// The objective's formulas (DESIGN.md section 1), each written once; `map`
// is a layer's whole feature map: C channels, N = H x W positions.
//   content  E = w * sum((F - P)^2) / (C N),  dE/dF = 2 w (F - P) / (C N)
//   style    G = F F^T / (C N),  E = w * sum((G - A)^2) / C^2,
//            dE/dF = 2 dE/dG F / (C N) = 4 w (G - A) F / (C^3 N)
double map_elements(const MapSize& map) { return double(map.channels) * map.height * map.width; }
float gram_normaliser(const MapSize& map) { return float(1.0 / map_elements(map)); }
double content_loss(double weight, const MapSize& map, double squared_sum) {
  return weight / map_elements(map) * squared_sum;
}
double content_gradient_scale(double weight, const MapSize& map) { return 2.0 * weight / map_elements(map); }
double style_loss(double weight, const MapSize& map, double squared_difference_sum) {
  const double c = map.channels;
  return weight * squared_difference_sum / (c * c);
}
double style_gradient_scale(double weight, const MapSize& map) {
  const double c = map.channels;
  return 4.0 * weight / (c * c * c * double(map.height) * map.width);
}

}  // namespace

TiledObjective::TiledObjective(Backend& backend, const Architecture& arch, const WeightSet& weights, TileGrid grid,
                               RankMap ranks, ObjectiveSettings settings, Communicator& communicator)
    : backend_(backend), arch_(arch), settings_(std::move(settings)), communicator_(communicator),
      image_(std::move(grid), std::move(ranks), communicator.rank()) {
  if (settings_.content_layers.empty() && settings_.style_layers.empty()) fail("no content or style layer given");
  taps_ = settings_.layers();
  for (const auto& layer : settings_.content_layers) {
    global_content_.push_back(feature_map_size(arch_, layer, image_.grid().height, image_.grid().width));
    content_stride_.push_back(receptive_field(arch_, layer).stride_px);
  }
  for (const auto& layer : settings_.style_layers) {
    global_style_.push_back(feature_map_size(arch_, layer, image_.grid().height, image_.grid().width));
    style_stride_.push_back(receptive_field(arch_, layer).stride_px);
  }
  for (const auto& size : global_content_)
    if (size.channels == 0) fail("the image (", image_.grid().width, "x", image_.grid().height, ") is too small for this network");
  for (const auto& size : global_style_)
    if (size.channels == 0) fail("the image (", image_.grid().width, "x", image_.grid().height, ") is too small for this network");

  // This rank's tiles, their networks (planned now, while the weights are at
  // hand); their slices of the rank's vectors are image_'s views.
  for (const Tile& tile : image_.local_tiles()) {
    LocalTile local;
    local.tile = tile;
    auto key = std::make_pair(tile.grown.height(), tile.grown.width());
    auto& planned = planned_[key];
    if (!planned) {
      planned = std::make_unique<Planned>();
      Shape shape{3, tile.grown.height(), tile.grown.width()};
      planned->network = std::make_unique<Network>(backend_, arch_, weights, settings_.pooling, shape, taps_);
      for (const auto& layer : settings_.content_layers)
        planned->content_taps.push_back(planned->network->tap_index(layer));
      for (const auto& layer : settings_.style_layers) {
        int tap = planned->network->tap_index(layer);
        planned->style_taps.push_back(tap);
        planned->grams.push_back(backend_.plan_gram(planned->network->tap_shape(tap)));
      }
    }
    local.planned = planned.get();
    local.grown_image =
        backend_.allocate({3, tile.grown.height(), tile.grown.width()}, Layout::planar, Backend::Contents::unset);
    local.grown_gradient =
        backend_.allocate({3, tile.grown.height(), tile.grown.width()}, Layout::planar, Backend::Contents::unset);
    tiles_.push_back(std::move(local));
  }

  // Gram sums of all style layers in one double buffer on the backend, and
  // the content and TV loss values after them: one all-reduce per
  // evaluation carries every global sum.
  std::size_t sums = 0;
  for (const auto& size : global_style_) {
    Shape gram{1, size.channels, size.channels};
    gram_offsets_.push_back(sums);
    sums += gram.elements();
    grams_.push_back(backend_.allocate(gram, Layout::planar));
    scratch_.push_back(backend_.allocate(gram, Layout::planar));
    differences_.push_back(backend_.allocate(gram, Layout::planar));
  }
  loss_offset_ = sums;
  sums_ = backend_.allocate_doubles(sums + 2);
  for (const Box& block : image_.grid().blocks())
    for (auto& t : tiles_)
      if (t.tile.owned.contains(block)) t.blocks.push_back(block);

  halo_ = std::make_unique<HaloPlan>(backend_, communicator_, image_);
}

TiledObjective::~TiledObjective() = default;

void TiledObjective::forward_tile(std::size_t i) {
  auto& t = tiles_[i];
  if (t.planned->resident == int(i) && t.planned->network->holds_buffers()) return;
  for (auto& [shape, other] : planned_)
    if (other.get() != t.planned && other->network->holds_buffers()) {
      other->network->release_buffers();
      other->resident = -1;
    }
  t.planned->network->forward(t.grown_image);
  t.planned->resident = int(i);
}

void TiledObjective::set_content(const std::vector<float>& grown_crops) {
  std::size_t expected = 0;
  for (const auto& t : tiles_) expected += 3 * std::size_t(t.tile.grown.area());
  if (grown_crops.size() != expected) fail("internal: content crops of the wrong size");
  const float* crop = grown_crops.data();
  for (auto& t : tiles_) {
    std::size_t count = 3 * std::size_t(t.tile.grown.area());
    backend_.upload(std::span<const float>(crop, count), t.grown_image);
    crop += count;
    t.planned->resident = -1;
    forward_tile(std::size_t(&t - tiles_.data()));
    t.planned->resident = -1;  // content, not the image: a render must forward again
    Network& net = *t.planned->network;
    t.content_targets.clear();
    for (int tap : t.planned->content_taps) {
      Tensor target = backend_.allocate(net.tap_shape(tap), Layout::features);
      backend_.copy(net.features(tap), target);
      t.content_targets.push_back(std::move(target));
    }
  }
}

void TiledObjective::set_style_targets(StyleTargets targets) {
  if (targets.grams.size() != settings_.style_layers.size()) fail("internal: style targets do not match the layers");
  targets_ = std::move(targets);
}

Box TiledObjective::features_of(const Box& box, const LocalTile& t, int stride, const MapSize& global) const {
  return feature_window(box, t.tile.grown, stride, global.height, global.width, image_.grid().width, image_.grid().height);
}

LossTerms TiledObjective::evaluate(const Tensor& local_image, Tensor& local_gradient) {
  if (local_image.elements() != local_elements() || local_gradient.elements() != local_elements())
    fail("internal: tiled vectors of the wrong size");
  if (!settings_.style_layers.empty() && targets_.grams.empty()) fail("internal: style targets not set");
  using clock = std::chrono::steady_clock;
  auto seconds_since = [](clock::time_point start) { return std::chrono::duration<double>(clock::now() - start).count(); };
  auto start = clock::now();
  times_ = {};
  halo_->fill(local_image, [&](int local) -> Tensor& { return tiles_[local].grown_image; });
  times_.halo = seconds_since(start);

  // Pass 1: statistics over owned positions.
  double content_sum = 0.0, tv_sum = 0.0;
  backend_.clear(sums_);
  for (std::size_t i = 0; i < tiles_.size(); ++i) {
    auto& t = tiles_[i];
    Network& net = *t.planned->network;
    t.planned->resident = -1;  // the image changed since the last pass
    forward_tile(i);
    for (std::size_t c = 0; c < t.planned->content_taps.size(); ++c) {
      const auto& global = global_content_[c];
      Box owned = features_of(t.tile.owned, t, content_stride_[c], global);
      if (owned.area() == 0) continue;
      content_sum += content_loss(settings_.content_weight, global,
                                  backend_.squared_distance(net.features(t.planned->content_taps[c]),
                                                            t.content_targets[c], owned, 0.0f, nullptr));
    }
    // The TV value now, so that it joins the one all-reduce; the gradient
    // this writes into grown_gradient is overwritten by the backward pass.
    tv_sum += backend_.total_variation(t.grown_image, settings_.tv_weight, t.grown_gradient,
                                       window_in(t.tile.owned, t.tile.grown));
    for (std::size_t l = 0; l < t.planned->style_taps.size(); ++l) {
      const auto& global = global_style_[l];
      const float normaliser = gram_normaliser(global);
      for (const Box& block : t.blocks) {
        Box window = features_of(block, t, style_stride_[l], global);
        if (window.area() == 0) continue;
        t.planned->grams[l]->forward_contiguous(net.features(t.planned->style_taps[l]), window, normaliser,
                                                scratch_[l]);
        backend_.accumulate_double(scratch_[l], sums_, gram_offsets_[l]);
      }
    }
  }
  auto reduce_start = clock::now();
  double loss_sums[2] = {content_sum, tv_sum};
  backend_.write_doubles(loss_sums, sums_, loss_offset_);
  communicator_.sum(backend_, sums_);
  backend_.read_doubles(sums_, loss_offset_, loss_sums);
  LossTerms losses;
  losses.content = loss_sums[0];
  losses.tv = loss_sums[1];
  times_.allreduce += seconds_since(reduce_start);
  for (std::size_t l = 0; l < grams_.size(); ++l) backend_.assign_from_double(sums_, gram_offsets_[l], grams_[l]);

  for (std::size_t l = 0; l < grams_.size(); ++l) {
    backend_.subtract(grams_[l], targets_.grams[l], differences_[l]);
    double layer_loss =
        style_loss(settings_.style_weight, global_style_[l], backend_.dot(differences_[l], differences_[l]));
    losses.style_per_layer.push_back(layer_loss);
    losses.style += layer_loss;
  }

  // Each term's gradient scale (its weight included). Normalised gradients
  // divide the unweighted gradient by its global L1 norm (neural-style's
  // norm + 1e-8) and then apply the weight.
  std::vector<double> content_scale, style_scale;
  for (const auto& global : global_content_)
    content_scale.push_back(content_gradient_scale(settings_.content_weight, global));
  for (const auto& global : global_style_) style_scale.push_back(style_gradient_scale(settings_.style_weight, global));
  if (settings_.normalize_gradients) {
    std::vector<double> norms = feature_gradient_norms(content_scale, style_scale);
    auto normalise = [](double& scale, double weight, double weighted_norm) {
      if (weight != 0.0) scale /= weighted_norm / std::abs(weight) + 1e-8;
    };
    for (std::size_t c = 0; c < content_scale.size(); ++c)
      normalise(content_scale[c], settings_.content_weight, norms[c]);
    for (std::size_t l = 0; l < style_scale.size(); ++l)
      normalise(style_scale[l], settings_.style_weight, norms[content_scale.size() + l]);
  }

  // Pass 2: each tile back-propagates on its own; no masking is needed, as
  // the garbage near a grown box's inner edges never reaches an owned pixel.
  for (std::size_t i = 0; i < tiles_.size(); ++i) {
    auto& t = tiles_[i];
    Network& net = *t.planned->network;
    forward_tile(i);  // again, unless this tile's activations are still held
    net.clear_feature_gradients();
    for (std::size_t c = 0; c < t.planned->content_taps.size(); ++c) {
      int tap = t.planned->content_taps[c];
      backend_.squared_distance(net.features(tap), t.content_targets[c], whole_map(net.tap_shape(tap)),
                                float(content_scale[c]), &net.feature_gradient(tap));
    }
    for (std::size_t l = 0; l < t.planned->style_taps.size(); ++l) {
      int tap = t.planned->style_taps[l];
      t.planned->grams[l]->backward(net.features(tap), whole_map(net.tap_shape(tap)), differences_[l],
                                    float(style_scale[l]), net.feature_gradient(tap));
    }
    net.backward(t.grown_gradient);
    Box owned = window_in(t.tile.owned, t.tile.grown);
    backend_.total_variation(t.grown_image, settings_.tv_weight, t.grown_gradient, owned);
    Tensor gradient_slice = image_.view(local_gradient, int(i));
    backend_.copy_window(t.grown_gradient, owned, gradient_slice, 0, 0);
  }
  times_.compute = seconds_since(start) - times_.halo - times_.allreduce;
  return losses;
}

std::vector<double> TiledObjective::feature_gradient_norms(const std::vector<double>& content_scale,
                                                          const std::vector<double>& style_scale) {
  // Each term's unweighted gradient is written, one at a time, into its
  // tap's feature gradient (cleared again before the backward pass) over
  // the owned positions only, whose L1 norms sum to the whole map's.
  std::vector<double> norms(content_scale.size() + style_scale.size(), 0.0);
  for (std::size_t i = 0; i < tiles_.size(); ++i) {
    auto& t = tiles_[i];
    Network& net = *t.planned->network;
    forward_tile(i);
    for (std::size_t c = 0; c < t.planned->content_taps.size(); ++c) {
      Box owned = features_of(t.tile.owned, t, content_stride_[c], global_content_[c]);
      if (owned.area() == 0) continue;
      int tap = t.planned->content_taps[c];
      Tensor& scratch = net.feature_gradient(tap);
      backend_.fill(scratch, 0.0f);
      backend_.squared_distance(net.features(tap), t.content_targets[c], owned, float(content_scale[c]), &scratch);
      norms[c] += backend_.window_sum_abs(scratch, owned);
    }
    for (std::size_t l = 0; l < t.planned->style_taps.size(); ++l) {
      Box owned = features_of(t.tile.owned, t, style_stride_[l], global_style_[l]);
      if (owned.area() == 0) continue;
      int tap = t.planned->style_taps[l];
      Tensor& scratch = net.feature_gradient(tap);
      backend_.fill(scratch, 0.0f);
      t.planned->grams[l]->backward(net.features(tap), owned, differences_[l], float(style_scale[l]), scratch);
      norms[content_scale.size() + l] += backend_.window_sum_abs(scratch, owned);
    }
  }
  auto reduce_start = std::chrono::steady_clock::now();
  communicator_.sum(std::span<double>(norms));
  times_.allreduce += std::chrono::duration<double>(std::chrono::steady_clock::now() - reduce_start).count();
  return norms;
}

double TiledObjective::flops_per_evaluation() const {
  double total = 0.0;
  for (const auto& t : tiles_) {
    const Network& net = *t.planned->network;
    double macs = 2.0 * net.forward_macs();
    for (int tap : t.planned->style_taps) {
      Shape shape = net.tap_shape(tap);
      macs += 2.0 * double(shape.channels) * shape.channels * shape.plane();
    }
    total += 2.0 * macs;
  }
  return communicator_.sum(total);
}

StyleTargets tiled_style_targets(Backend& backend, const Architecture& arch, const WeightSet& weights,
                                 Pooling pooling, const std::vector<std::string>& layers,
                                 const std::vector<StyleImage>& styles, const std::vector<float>& blend_weights,
                                 int rows, int columns, Communicator& communicator) {
  const auto blend = normalised_blend_weights(styles.size(), blend_weights);
  StyleTargets targets;
  targets.layers = layers;
  if (layers.empty()) return targets;

  std::vector<int> layer_stride;
  for (const auto& layer : layers) layer_stride.push_back(receptive_field(arch, layer).stride_px);
  std::vector<std::size_t> offsets;
  std::vector<double> blended;
  for (std::size_t k = 0; k < styles.size(); ++k) {
    const StyleImage& style = styles[k];
    std::vector<MapSize> global;
    for (const auto& layer : layers) {
      global.push_back(feature_map_size(arch, layer, style.height, style.width));
      if (global.back().channels == 0)
        fail("the style image (", style.width, "x", style.height, " px) is too small for layer ", layer);
    }
    if (k == 0) {
      for (const auto& size : global) {
        offsets.push_back(blended.size());
        blended.resize(blended.size() + std::size_t(size.channels) * size.channels);
      }
    }
    // The style image's own grid: as many tiles as the render's, fewer when
    // it is too small to hold them.
    const auto [most_rows, most_columns] = TileGrid::most_tiles(arch, layers, style.width, style.height);
    TileGrid grid = TileGrid::for_layers(arch, layers, style.width, style.height, std::min(rows, most_rows),
                                         std::min(columns, most_columns));
    auto owners = RankMap::contiguous(int(grid.tiles.size()), communicator.size());
    std::vector<Box> grown;
    for (const Tile& tile : grid.tiles) grown.push_back(tile.grown);
    std::vector<float> crops = scatter_boxes(communicator, style.planar, style.width, style.height, grown, owners);
    const float* crop = crops.data();
    DoubleBuffer sums = backend.allocate_doubles(blended.size());
    std::map<std::pair<int, int>, std::unique_ptr<Network>> networks;
    for (const Tile& tile : grid.tiles) {
      if (owners.rank_of(tile.index) != communicator.rank()) continue;
      const Box& g = tile.grown;
      Tensor image = backend.allocate({3, g.height(), g.width()}, Layout::planar);
      backend.upload(std::span<const float>(crop, 3 * std::size_t(g.area())), image);
      crop += 3 * std::size_t(g.area());
      auto key = std::make_pair(g.height(), g.width());
      if (!networks.count(key)) {
        networks.clear();  // one tile's buffers at a time
        networks[key] = std::make_unique<Network>(backend, arch, weights, pooling, image.shape(), layers,
                                                  NetworkUse::features_only);
      }
      Network* network = networks[key].get();
      network->forward(image);
      for (std::size_t l = 0; l < layers.size(); ++l) {
        int tap = network->tap_index(layers[l]);
        const auto& size = global[l];
        Tensor partial = backend.allocate({1, size.channels, size.channels}, Layout::planar);
        auto gram = backend.plan_gram(network->tap_shape(tap));
        const float normaliser = gram_normaliser(size);
        for (const Box& block_box : grid.blocks()) {
          if (!tile.owned.contains(block_box)) continue;
          Box window = feature_window(block_box, g, layer_stride[l], size.height, size.width, style.width,
                                         style.height);
          if (window.area() == 0) continue;
          gram->forward_contiguous(network->features(tap), window, normaliser, partial);
          backend.accumulate_double(partial, sums, offsets[l]);
        }
      }
    }
    if (communicator.size() > 1) communicator.sum(backend, sums);
    std::vector<double> summed(sums.size());
    backend.read_doubles(sums, 0, summed);
    for (std::size_t i = 0; i < summed.size(); ++i) blended[i] += blend[k] * summed[i];
  }
  DoubleBuffer blended_sums = backend.allocate_doubles(blended.size());
  backend.write_doubles(blended, blended_sums, 0);
  for (std::size_t l = 0; l < layers.size(); ++l) {
    int c = feature_map_size(arch, layers[l], styles[0].height, styles[0].width).channels;
    Tensor gram = backend.allocate({1, c, c}, Layout::planar);
    backend.assign_from_double(blended_sums, offsets[l], gram);
    targets.grams.push_back(std::move(gram));
  }
  return targets;
}

}  // namespace tessera
