// What a render is, worked out from its request and the weights file alone,
// before any image is read: the same on every rank.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "tessera/render.hpp"
#include "tessera/render_job.hpp"
#include "tessera/size.hpp"
#include "tessera/weights.hpp"

namespace tessera::job {

struct JobPlan {
  // The request as the job runs it: the backbone named by --proto-file,
  // the line search that --normalize-gradients implies.
  RenderRequest request;
  std::vector<std::string> styles;  // the style files, one each
  SizeRequest size;
  std::filesystem::path weights_path;
  WeightSet weights;
  std::string model;
  std::string deepest;  // the deepest layer the weights reach
  RenderSettings settings;
  InitKind first_init = InitKind::random;
  std::vector<std::string> notes;  // said once the render starts
};

// Checks every option, cheap ones first, then reads the weights and chooses
// the loss layers. `writes_output`: this rank writes the image, so it tries
// the output's folder now rather than after hours of work.
JobPlan plan_job(const RenderRequest& request, bool writes_output);

}  // namespace tessera::job
