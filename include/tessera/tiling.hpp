// Tiles in global pixel coordinates (DESIGN.md sections 2 and 3): each tile
// owns a box of the image and computes on that box grown by a halo wide
// enough that every owned pixel's gradient is exact.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "tessera/box.hpp"
#include "tessera/model.hpp"
#include "tessera/rank_map.hpp"

namespace tessera {

struct Tile {
  int index = 0;  // row-major in the grid
  int row = 0, column = 0;
  Box owned;  // the pixels this tile's optimiser state holds
  Box grown;  // owned grown by the halo, clipped to the image: what it computes on
};

// The decomposition of a width x height image into rows x columns tiles.
//
// Gram statistics are summed over fixed `block` x `block` squares of the
// image (the last row and column of blocks take the remainder), each block's
// sum computed alone and added in double: so they come out the same in any
// decomposition, and L-BFGS, which magnifies round-off, renders the same
// image on 1 rank or 64. Tile boundaries inside the image are therefore
// multiples of `block`, itself a multiple of `stride` (the backbone's total
// stride, so that pooling sees the whole image's grid). `halo` is a multiple
// of `stride`.
struct TileGrid {
  int width = 0, height = 0;
  int rows = 1, columns = 1;
  int stride = 1;
  int block = 1;
  int halo = 0;
  std::vector<Tile> tiles;

  // Throws tessera::Error when the image is too small for that many tiles
  // (each needs at least one block of owned pixels in each direction).
  static TileGrid make(int width, int height, int rows, int columns, int stride, int halo, int block);
  // The grid a render of `layers` uses, and the one place its geometry is
  // chosen: the total stride of the deepest layer, the exact halo (or, for
  // `halo_px` >= 0, the user's width rounded up to the stride) and the
  // reduction block for this image.
  static TileGrid for_layers(const Architecture& arch, const std::vector<std::string>& layers, int width,
                             int height, int rows, int columns, int halo_px = -1);
  // The most rows and columns of tiles such an image holds (each tile owns
  // at least one reduction block each way).
  static std::pair<int, int> most_tiles(const Architecture& arch, const std::vector<std::string>& layers, int width,
                                        int height);
  Box image() const { return {0, 0, width, height}; }
  // The reduction blocks, row-major; those at the right and bottom edges
  // reach the image's edge.
  std::vector<Box> blocks() const;
};

// The block size for an image: a multiple of the stride, large enough that a
// block's C x C Gram sum is cheap beside its products (up to 16 strides:
// 256 px for VGG-19 to relu5_1), small enough that a small image still splits
// into several blocks each way. It depends only on the image and the layers.
int reduction_block_for(int width, int height, int stride);

// The cumulative stride of the deepest of `layers`.
int total_stride_for(const Architecture& arch, const std::vector<std::string>& layers);
// The exact halo: the largest receptive field among `layers`, rounded up to
// a multiple of the total stride. A feature at q depends on input within its
// field; the gradient at an owned pixel collects features whose field holds
// it, so input up to one field beyond the tile must be real pixels.
int halo_width_for(const Architecture& arch, const std::vector<std::string>& layers);
// The halo a render uses: the exact one when `requested_px` is negative,
// otherwise the user's width rounded up to the total stride.
int render_halo_for(const Architecture& arch, const std::vector<std::string>& layers, int requested_px);

// A box of the image (on the block grid) as a window of the feature map a
// tile computes on its grown box, at a layer of this stride: the positions q
// whose pixel q * stride lies in the box, clipped to the whole image's map
// (`whole_map`: its height and width at that layer). Boxes that reach the
// image's right or bottom edge take the rest of the whole map (ceil-rounded
// pools). Grown boxes start on the stride grid, so local position = global
// position - grown origin / stride.
Box feature_window(const Box& box, const Box& grown, int stride, int whole_map_height, int whole_map_width,
                   int image_width, int image_height);

// Parses "2x3" (rows x columns); throws tessera::Error otherwise.
void parse_tile_grid(const std::string& text, int& rows, int& columns);


}  // namespace tessera

namespace tessera {

// What a rank needs, roughly, to render its tiles (bytes): the backbone's
// weights in two layouts, the whole images on the host, the optimiser's
// state over its owned pixels, every tile's content targets, and one tile's
// activations at a time (the largest of its tiles).
struct MemoryEstimate {
  double weights = 0, images = 0, optimiser = 0, content_targets = 0, activations = 0;
  double total() const { return weights + images + optimiser + content_targets + activations; }
};
MemoryEstimate estimate_rank_memory(const Architecture& arch, const std::vector<std::string>& content_layers,
                                    const std::vector<std::string>& style_layers, const TileGrid& grid,
                                    const RankMap& ranks, int rank, int bytes_per_activation,
                                    int optimiser_vectors);

// Parses "8GiB", "512MiB", "2G", "1.5GB" into bytes; throws tessera::Error.
double parse_bytes(const std::string& text);

}  // namespace tessera
