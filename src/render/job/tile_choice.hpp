// The tiles of each scale and the memory they need: one tile per rank unless
// the user chose a grid, more per rank where --memory-per-rank asks for it.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "tessera/backend.hpp"
#include "tessera/communicator.hpp"
#include "tessera/render.hpp"
#include "tessera/render_job.hpp"
#include "tessera/scales.hpp"
#include "tessera/weights.hpp"

namespace tessera::job {

// The most memory one rank needs (estimate, bytes) for the tile grid in
// `settings` at this size.
double rank_memory_needed(const RenderRequest& o, const RenderSettings& settings, int width, int height, int ranks);

// The most elements one tensor may have on `backend` (a name, as
// make_backend takes it), 0 for no limit: cuDNN describes tensors with
// 32-bit sizes, so the CUDA backend's activations stay below 2^31.
std::size_t most_tensor_elements(const std::string& backend);

// The largest activation any tile of the grid in `settings` computes.
std::size_t largest_activation(const RenderSettings& settings, int width, int height, int ranks);

// Sets settings' tile grid for one scale; what differs from the request is
// added to `notes`. Throws tessera::Error where no grid fits the ranks, the
// memory budget, or `most_elements` (0: no limit) per tensor. The budget is
// --memory-per-rank where given, else `device_budget` (bytes, 0 for none:
// the GPU's free memory, see device_memory_budget).
void choose_tiles(const RenderRequest& o, RenderSettings& settings, int width, int height, int ranks,
                  std::vector<std::string>& notes, std::size_t most_elements = 0, double device_budget = 0.0);

// What --tiles auto may plan for on `backend`'s device: the part of its
// free memory (cudaMemGetInfo) kept for tiles, the least over the ranks so
// that all choose one grid, at least 1 byte; 0 where the backend's memory
// is the host's.
// Collective over `communicator`; call it before the render allocates.
double device_memory_budget(Backend& backend, Communicator& communicator);

// Before the first scale: the tiles and memory of every scale (logged when
// `show`), and one warning where the largest does not fit in the memory
// this machine has free.
void check_memory(const RenderRequest& o, const RenderSettings& settings, const std::vector<Scale>& scales, int ranks,
                  bool show);

// A halo below the rule's is an approximation: its error, measured on a
// crop of the content image, as a line for the log.
std::string measure_halo_error(Backend& backend, const RenderSettings& settings, const WeightSet& weights,
                               const RenderInputs& inputs);

}  // namespace tessera::job
