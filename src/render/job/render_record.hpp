// What a render is, as text, from one list of settings: the identity a
// checkpoint must share to continue it, and the output image's metadata.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "render/job/job_plan.hpp"
#include "tessera/scales.hpp"

namespace tessera::job {

using Record = std::map<std::string, std::string>;

// The settings that make the image what it is (loss layers and weights,
// optimiser, seed, precision, ...): the part the two records share.
Record settings_record(const JobPlan& plan);

// Rank 0: a checkpoint continues only a render that agrees on all of this
// (not on ranks, tiles, threads or backend): the settings, and the inputs by
// their SHA-256 (weights, content, styles, an init image).
Record resume_identity(const JobPlan& plan, int width, int height, const std::vector<Scale>& scales);

// The output image's metadata at scale `s` of `scales` (which holds the
// image's size), rendered with `scale_settings`' tiles.
Record image_metadata(const JobPlan& plan, const std::vector<Scale>& scales, int s,
                      const RenderSettings& scale_settings);

}  // namespace tessera::job
