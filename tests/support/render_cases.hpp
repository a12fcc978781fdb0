// Small seeded renders shared by the tiling tests (one process) and the MPI
// tests: the same settings, so that their results compare.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "support/two_loop_history.hpp"
#include "tessera/backend.hpp"
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

// Sizes that divide neither into the tiles nor by the stride, and settings
// that test the reductions hard: L-BFGS's second step divides by
// y = g2 - g1, a difference of two nearly equal gradients after a first step
// of only 1/|g|_1, and so magnifies any round-off. When Gram matrices were
// summed tile by tile in float, NIN at style weight 1e3 differed by 7e-3
// after four iterations (and the real vgg_r31 render by 0.1 after ten); the
// fixed reduction blocks summed in double make them agree exactly.
extern const RenderCase kVggCase;
extern const RenderCase kNinCase;

Image seeded_rgb(int width, int height, std::uint64_t seed);

// The renderer of a case on any backend: from the content image, on rows x
// columns tiles; halo_px -1 is the exact halo. Only rank 0 is given pixels.
// `history`, where set, makes L-BFGS's history (RenderInputs::lbfgs_history).
using HistoryFactory = std::function<std::unique_ptr<LbfgsHistory>(Backend&, Communicator&, Shape, int capacity)>;
std::unique_ptr<Renderer> case_renderer(const RenderCase& c, Backend& backend, Communicator& communicator,
                                        const std::string& optimizer, int rows, int columns, int halo_px = -1,
                                        int iterations = 6, int lbfgs_history = 100,
                                        LineSearch line_search = LineSearch::strong_wolfe,
                                        HistoryFactory history = nullptr);
// L-BFGS's history of inner products, shadowed by the two-loop recursion
// (TandemHistory), every comparison into `record`.
HistoryFactory tandem_history(std::shared_ptr<TandemRecord> record);

// Six iterations (by default) from the content image, on rows x columns
// tiles; halo_px -1 is the exact halo. Rank 0 gets the image.
Image render_case(const RenderCase& c, Communicator& communicator, const std::string& optimizer, int rows,
                  int columns, int halo_px = -1, int iterations = 6);

double max_difference(const Image& a, const Image& b);

}  // namespace tessera::testing
