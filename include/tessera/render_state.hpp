// What a checkpoint holds of a render besides its vectors: plain values, so
// that the checkpoint files depend on this header alone, not on the render.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace tessera {

// What an optimiser carries from one iteration to the next, for checkpoints:
// scalars (the same on every rank) and named vectors laid out like the image
// (each rank holds its part).
struct OptimizerState {
  std::map<std::string, double> scalars;
  std::map<std::string, std::vector<double>> arrays;  // also the same on every rank
  std::vector<std::string> vectors;  // names, in the order they are saved
};

// Where a render stands, for checkpoints: the iterations done and the
// optimiser's state (the vectors themselves travel through Renderer::save
// and Renderer::restore).
struct RenderState {
  int iterations_done = 0;
  std::string optimizer;
  OptimizerState optimizer_state;
};

}  // namespace tessera
