// Coarse to fine: a render first at low resolution, each finer scale
// starting from the upsampled result of the one before. Most iterations go
// where they are cheap; the last scale is the output's own size.
#pragma once

#include <string>
#include <vector>

namespace tessera {

struct Scale {
  int width = 0, height = 0;
  int iterations = 0;
};

// The smallest long side a scale may have: below it the deeper layers'
// feature maps are a few pixels across and their statistics mean little.
inline constexpr int min_scale_long_side = 64;

// `--scales auto` halves the long side until it is at most this: a render
// up to this size is one scale, larger ones start here, where the image's
// composition settles in fewer, cheaper iterations.
inline constexpr int auto_coarsest_long_side = 1024;

// `spec` is "auto" (as many scales as auto_coarsest_long_side asks, the
// long side halving), "1" (one scale: the output), "N" (N scales, the long side
// halving from the output's towards the coarsest), or a list of long sides
// "512,1024,2048" in increasing order (the output's own size is added when
// the list stops short of it). Coarser scales keep the output's aspect
// ratio. `iterations` is the coarsest scale's count; each finer scale gets
// half the one before it (at least 1), unless `per_scale` gives every
// scale's count. Throws tessera::Error on anything malformed.
std::vector<Scale> plan_scales(const std::string& spec, int width, int height, int iterations,
                               const std::vector<int>& per_scale = {});

}  // namespace tessera
