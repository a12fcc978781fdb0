#include "tessera/tiled_image.hpp"

#include <algorithm>

#include "tessera/box_copy.hpp"
#include "tessera/error.hpp"

namespace tessera {

TiledImage::TiledImage(TileGrid grid, RankMap ranks, int rank) : grid_(std::move(grid)), ranks_(std::move(ranks)) {
  if (ranks_.tile_count() != int(grid_.tiles.size())) fail("internal: one owner per tile needed");
  for (const Tile& tile : grid_.tiles) {
    if (ranks_.rank_of(tile.index) != rank) continue;
    local_tiles_.push_back(tile);
    offsets_.push_back(local_elements_);
    local_elements_ += 3 * std::size_t(tile.owned.area());
  }
}

std::size_t TiledImage::elements_of_rank(int rank) const {
  std::size_t count = 0;
  for (const Tile& tile : grid_.tiles)
    if (ranks_.rank_of(tile.index) == rank) count += 3 * std::size_t(tile.owned.area());
  return count;
}

Tensor TiledImage::view(const Tensor& local_vector, int local) const {
  const Box& owned = local_tiles_[local].owned;
  return local_vector.slice(offsets_[local], {3, owned.height(), owned.width()});
}

std::vector<Box> TiledImage::owned_boxes() const {
  std::vector<Box> boxes;
  for (const Tile& tile : grid_.tiles) boxes.push_back(tile.owned);
  return boxes;
}

std::vector<Box> TiledImage::grown_boxes() const {
  std::vector<Box> boxes;
  for (const Tile& tile : grid_.tiles) boxes.push_back(tile.grown);
  return boxes;
}

void TiledImage::place(int rank, const float* part, std::vector<float>& whole) const {
  const std::size_t plane = std::size_t(grid_.width) * grid_.height;
  whole.resize(3 * plane);
  for (const Tile& tile : grid_.tiles) {
    if (ranks_.rank_of(tile.index) != rank) continue;
    const Box& b = tile.owned;
    for (int c = 0; c < 3; ++c)
      for (int y = b.y0; y < b.y1; ++y) {
        std::copy_n(part, b.width(), whole.data() + c * plane + std::size_t(y) * grid_.width + b.x0);
        part += b.width();
      }
  }
}

std::vector<float> TiledImage::scatter(Communicator& communicator, const std::vector<float>& whole) const {
  return scatter_boxes(communicator, whole, grid_.width, grid_.height, owned_boxes(), ranks_);
}

std::vector<float> TiledImage::gather(Communicator& communicator, std::span<const float> local) const {
  std::vector<float> gathered;
  communicator.gather_to_root(local, gathered);
  if (communicator.rank() != 0) return {};
  std::vector<float> whole(3 * std::size_t(grid_.width) * grid_.height);
  const float* part = gathered.data();
  for (int rank = 0; rank < communicator.size(); ++rank) {
    place(rank, part, whole);
    part += elements_of_rank(rank);
  }
  return whole;
}

std::vector<float> scatter_boxes(Communicator& communicator, const std::vector<float>& whole, int width,
                                 int height, const std::vector<Box>& boxes, const RankMap& owners) {
  // The whole image is one box, rank 0's.
  const bool root = communicator.rank() == 0;
  if (root && whole.size() != 3 * std::size_t(width) * height)
    fail("internal: scatter_boxes needs the whole image on rank 0");
  return copy_boxes(communicator, 3, {Box{0, 0, width, height}}, RankMap::contiguous(1, communicator.size()),
                    root ? std::span<const float>(whole) : std::span<const float>(), boxes, owners);
}

}  // namespace tessera
