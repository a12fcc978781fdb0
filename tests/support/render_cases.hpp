// Small seeded renders shared by the tiling tests (one process) and the MPI
// tests: the same settings, so that their results compare.
#pragma once

#include <string>
#include <vector>

#include "tessera/communicator.hpp"
#include "tessera/image.hpp"
#include "tessera/render.hpp"

namespace tessera::testing {

struct RenderCase {
  std::string model;
  int convs;  // synthetic weights for the first `convs` convolutions
  std::vector<std::string> content, style;
  int width, height;
  float style_weight;
};

// Sizes that divide neither into the tiles nor by the stride. L-BFGS's
// second step divides by y = g2 - g1, a difference of two nearly equal
// gradients after a first step of only 1/|g|_1: it magnifies the round-off
// of summing Gram matrices tile by tile (or rank by rank) rather than in one
// product. With NIN at style weight 1e3 that reached 4e-4 after two
// iterations and 7e-3 after four (measured; Adam stays exact; with the real
// vgg_r31 weights at style weight 1e6, 0.1 after ten). At weight 10 the
// first step is larger and the difference stays near 3e-5. It is round-off,
// not the halo: the first update is bit-identical, and a halo below the rule
// fails at once. Decomposition-independent Gram sums are the cure.
extern const RenderCase kVggCase;
extern const RenderCase kNinCase;

Image seeded_rgb(int width, int height, std::uint64_t seed);

// Four iterations (by default) from the content image, on rows x columns
// tiles; halo_px -1 is the exact halo. Rank 0 gets the image.
Image render_case(const RenderCase& c, Communicator& communicator, const std::string& optimizer, int rows,
                  int columns, int halo_px = -1, int iterations = 4);

double max_difference(const Image& a, const Image& b);

}  // namespace tessera::testing
