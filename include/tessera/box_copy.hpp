// Pixels moved from one decomposition of an image to another (as AMReX's
// ParallelCopy does): each rank holds the values of its boxes in one layout
// and receives those of its boxes in another, which may overlap several of
// the first's and other ranks'. No whole image is assembled anywhere.
#pragma once

#include <span>
#include <vector>

#include "tessera/communicator.hpp"
#include "tessera/rank_map.hpp"
#include "tessera/tiling.hpp"

namespace tessera {

// `local_from`: this rank's `from` boxes (those `from_owners` gives it), in
// box order, each `channels` planes of its width x height. Returns this
// rank's `to` boxes in the same form. Every pixel of a `to` box must lie in
// some `from` box (the `from` boxes do not overlap). A collective call: one
// exchange, at most one message per pair of ranks each way.
std::vector<float> copy_boxes(Communicator& communicator, int channels, const std::vector<Box>& from,
                              const RankMap& from_owners, std::span<const float> local_from,
                              const std::vector<Box>& to, const RankMap& to_owners);

}  // namespace tessera
