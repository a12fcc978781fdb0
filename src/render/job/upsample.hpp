// Between scales: the result of one scale, upsampled to the next scale's
// size, is where the next one starts. Each rank upsamples the pixels its
// tiles own at the next scale, from the part of this scale's image the
// filter reaches, which it receives from the ranks that hold it: no whole
// image on any rank.
#pragma once

#include <vector>

#include "tessera/communicator.hpp"
#include "tessera/render.hpp"

namespace tessera::job {

// This rank's owned pixels of the renderer's image (the backbone's input
// domain) resized to `next`'s size, in `next`'s local layout (what
// RenderInputs::local_start takes). Equal, value for value, to resizing the
// whole image with io::resize_image and scattering it. A collective call.
std::vector<float> upsample_for_next_scale(Renderer& renderer, const RenderLayout& next, Communicator& communicator);

}  // namespace tessera::job
