// A rank's part of a tiled image: the owned pixels of its tiles, one tile
// after another in tile order, each tile planar (3 planes of its owned
// box). Every per-rank vector of a render has this layout (the image, its
// gradient, the optimiser's vectors); this type says where each tile's
// pixels lie in it, gives a tile's view of it, and moves whole images in and
// out: scattered from rank 0, gathered to it, placed into a whole image.
#pragma once

#include <span>
#include <vector>

#include "tessera/communicator.hpp"
#include "tessera/rank_map.hpp"
#include "tessera/tensor.hpp"
#include "tessera/tiling.hpp"

namespace tessera {

class TiledImage {
 public:
  TiledImage(TileGrid grid, RankMap ranks, int rank);

  const TileGrid& grid() const { return grid_; }
  const RankMap& ranks() const { return ranks_; }
  // This rank's tiles, in tile order, and where each starts in its vector.
  const std::vector<Tile>& local_tiles() const { return local_tiles_; }
  std::size_t offset(int local) const { return offsets_[local]; }
  std::size_t local_elements() const { return local_elements_; }
  std::size_t elements_of_rank(int rank) const;
  // The owned pixels of this rank's `local`-th tile in a vector of this layout.
  Tensor view(const Tensor& local_vector, int local) const;
  // Every tile's owned and grown box, in tile order (with ranks()).
  std::vector<Box> owned_boxes() const;
  std::vector<Box> grown_boxes() const;

  // Rank `rank`'s vector written into the whole planar 3 x H x W image.
  void place(int rank, const float* part, std::vector<float>& whole) const;
  // Rank 0's whole planar image, each rank's part of it (a collective call).
  std::vector<float> scatter(Communicator& communicator, const std::vector<float>& whole) const;
  // Every rank's part assembled: the whole planar image on rank 0, empty
  // elsewhere (a collective call).
  std::vector<float> gather(Communicator& communicator, std::span<const float> local) const;

 private:
  TileGrid grid_;
  RankMap ranks_;
  std::vector<Tile> local_tiles_;
  std::vector<std::size_t> offsets_;
  std::size_t local_elements_ = 0;
};

// Rank 0's whole planar image (3 x height x width), cut into `boxes` (which
// may overlap, such as grown boxes) and sent to their owners: each rank gets
// its boxes' pixels one box after another, each planar (a collective call).
std::vector<float> scatter_boxes(Communicator& communicator, const std::vector<float>& whole, int width,
                                 int height, const std::vector<Box>& boxes, const RankMap& owners);

}  // namespace tessera
