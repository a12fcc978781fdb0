// The measurement behind `tessera bench` (and tessera-cuda-bench, which runs
// it where no I/O libraries are): the real render loop on seeded random
// weights and images, one warm-up iteration, then the timed ones.
#pragma once

#include <cstdint>
#include <string>

#include "tessera/backend.hpp"
#include "tessera/communicator.hpp"
#include "tessera/tiling.hpp"

namespace tessera {

struct BenchmarkCase {
  std::string model = "vgg19";  // neural-style's layers and loss weights for it
  int width = 256, height = 256;
  std::string optimizer = "lbfgs";
  int iterations = 10;  // timed, after one warm-up
  std::uint64_t seed = 0;
  int tile_rows = 1, tile_columns = 1;
  int lbfgs_history = 100;
};

struct BenchmarkResult {
  double initial_loss = 0.0;  // at the seeded start: comparable across precisions
  double final_loss = 0.0;
  double seconds = 0.0;       // of the timed iterations
  double flops = 0.0;         // of the timed iterations, on all ranks
  TileGrid grid;
  // Per timed iteration, on this rank: evaluations of the loss and what the
  // communicator carried (see CommunicationCounts).
  double evaluations = 0.0;
  double collectives = 0.0, collective_bytes = 0.0, collective_seconds = 0.0;
  double messages = 0.0, message_bytes = 0.0;
};

// Throws tessera::Error when the render stops before its iterations.
BenchmarkResult measure_render(Backend& backend, Communicator& communicator, const BenchmarkCase& c);

}  // namespace tessera
