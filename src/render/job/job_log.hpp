// What a render writes about itself as it goes: one JSON object per
// iteration (--log-json), and durations as people read them.
#pragma once

#include <cstdint>
#include <fstream>
#include <string>

#include "tessera/render.hpp"

namespace tessera::job {

// "42s", "3m05s", "2h10m".
std::string format_duration(double seconds);

// Where an iteration stands in the job, beyond its own report.
struct IterationPlace {
  int scale = 1, scales = 1;  // 1-based
  int width = 0, height = 0;
  int ranks = 1;
};

// What happened around an iteration besides the evaluations.
struct IterationExtras {
  double io_seconds = 0.0;  // writing intermediate images
  bool stalled = false;     // the stall warning was given at this iteration
  double checkpoint_seconds = 0.0;
  std::uintmax_t checkpoint_bytes = 0;  // 0: no checkpoint written
};

// The --log-json file, on rank 0 (closed elsewhere and where none was asked
// for). A resumed render keeps the lines up to its checkpoint and appends.
class IterationLog {
 public:
  IterationLog() = default;
  // `resumed_scale` (1-based) and `resumed_iteration`: where the render
  // continues from; 0 for a new render.
  IterationLog(const std::string& path, int resumed_scale, int resumed_iteration);
  void write(const IterationReport& report, const IterationPlace& place, const IterationExtras& extras);

 private:
  std::ofstream out_;
};

}  // namespace tessera::job
