// The images a render reads: rank 0 reads each once at its own size and
// resizes it for each scale; the other ranks learn only the sizes, and the
// renderer sends them the parts their tiles need.
#pragma once

#include <string>
#include <vector>

#include "render/job/job_plan.hpp"
#include "tessera/communicator.hpp"
#include "tessera/image.hpp"
#include "tessera/render.hpp"
#include "tessera/scales.hpp"

namespace tessera::job {

struct SourceImages {
  int width = 0, height = 0;  // the output's size, on every rank
  Image content;              // rank 0: cropped or padded to the output's shape
  std::vector<Image> styles;  // rank 0
  Image init;                 // rank 0, for --init FILE
};

// Reads the images on rank 0 and works out the output's size there; every
// rank returns knowing it (a collective call). Notes on the images (their
// colour spaces, the fit to the output's shape) go to `notes`.
SourceImages read_sources(const JobPlan& plan, Communicator& communicator, std::vector<std::string>& notes);

// The inputs of one scale: on rank 0 the images resized to it (the styles
// to --style-scale times its long side), elsewhere their sizes alone (a
// collective call). InitKind::given's start is the caller's to add.
RenderInputs scale_inputs(const JobPlan& plan, const SourceImages& sources, const Scale& scale, InitKind init,
                          Communicator& communicator);

}  // namespace tessera::job
