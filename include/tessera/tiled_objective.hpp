// The objective over a tiled image (DESIGN.md sections 2 and 3): each rank
// holds the owned pixels of its tiles, refreshes their halos from the tiles
// that own them, sums Gram statistics over owned feature positions only,
// all-reduces them, and back-propagates every tile on its own. One tile on
// one rank is the whole-image render; many tiles on one rank go out of core.
#pragma once

#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "tessera/backend.hpp"
#include "tessera/communicator.hpp"
#include "tessera/halo_plan.hpp"
#include "tessera/network.hpp"
#include "tessera/objective.hpp"
#include "tessera/rank_map.hpp"
#include "tessera/tiled_image.hpp"
#include "tessera/tiling.hpp"

namespace tessera {

// A style image in the backbone's input domain (planar 3 x H x W, host;
// on rank 0 only: the other ranks receive their tiles' crops).
struct StyleImage {
  int width = 0, height = 0;
  std::vector<float> planar;
};

// The style Gram targets computed on tiles of each style image (features
// only: one tile's activations at a time), the tiles spread over the ranks,
// summed over fixed blocks in double like the render's own statistics, and
// blended as sum_k w_k G(style_k) with the weights normalised to sum to 1.
// `rows` x `columns` is the render's grid, used for the style images too
// (fewer tiles where a style image is too small).
StyleTargets tiled_style_targets(Backend& backend, const Architecture& arch, const WeightSet& weights,
                                 Pooling pooling, const std::vector<std::string>& layers,
                                 const std::vector<StyleImage>& styles, const std::vector<float>& blend_weights,
                                 int rows, int columns, Communicator& communicator);

class TiledObjective {
 public:
  TiledObjective(Backend& backend, const Architecture& arch, const WeightSet& weights, TileGrid grid, RankMap ranks,
                 ObjectiveSettings settings, Communicator& communicator);
  ~TiledObjective();

  // The layout of this rank's vectors (the image, the gradient): its tiles'
  // owned pixels, one tile after another in tile order.
  const TiledImage& tiled_image() const { return image_; }
  const TileGrid& grid() const { return image_.grid(); }
  const RankMap& ranks() const { return image_.ranks(); }
  std::size_t local_elements() const { return image_.local_elements(); }
  // Targets: the content image's crops on this rank's tiles' grown boxes
  // (input domain, planar, tile order: what scatter_boxes gives); each tile
  // keeps the content features of its grown box.
  void set_content(const std::vector<float>& grown_crops);
  void set_style_targets(StyleTargets targets);

  // Loss at this rank's part of the image and its gradient (overwritten);
  // the loss terms are global (the same on every rank).
  LossTerms evaluate(const Tensor& local_image, Tensor& local_gradient);
  double flops_per_evaluation() const;

  // Where the last evaluation's time went on this rank (seconds).
  struct Times {
    double compute = 0.0;    // forward, losses, backward
    double halo = 0.0;       // filling the halos (copies and messages)
    double allreduce = 0.0;  // Gram and loss sums across ranks
  };
  const Times& last_times() const { return times_; }

 private:
  struct Planned;
  struct LocalTile;
  // Makes `planned` the one network holding activations (out of core, a
  // rank keeps one tile's activations at a time) and runs the tile forward
  // unless its activations are already there.
  void forward_tile(std::size_t local);
  // A box of the image (on the block grid) as a window of a tile's feature
  // map at this stride: the positions q whose pixel q * stride lies in the
  // box, clipped to the whole image's map.
  Box features_of(const Box& box, const LocalTile& tile, int stride, const MapSize& global) const;
  // With normalised gradients: the global L1 norm of each content, then
  // style, term's feature gradient at these scales.
  std::vector<double> feature_gradient_norms(const std::vector<double>& content_scale,
                                             const std::vector<double>& style_scale);

  Backend& backend_;
  const Architecture& arch_;
  ObjectiveSettings settings_;
  Communicator& communicator_;
  TiledImage image_;
  std::vector<std::string> taps_;
  std::vector<MapSize> global_content_, global_style_;
  std::vector<int> content_stride_, style_stride_;
  std::map<std::pair<int, int>, std::unique_ptr<Planned>> planned_;
  std::vector<LocalTile> tiles_;
  std::unique_ptr<HaloPlan> halo_;
  StyleTargets targets_;
  std::vector<Tensor> grams_, scratch_, differences_;
  // Every style layer's Gram sum in double (at gram_offsets_), then the
  // content and TV sums (at loss_offset_): one all-reduce.
  DoubleBuffer sums_;
  std::vector<std::size_t> gram_offsets_;
  std::size_t loss_offset_ = 0;
  Times times_;
};

}  // namespace tessera
