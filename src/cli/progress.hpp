// Progress of a render: one redrawn line on a terminal (bar, iteration,
// losses, iterations per minute, time left), plain lines otherwise.
#pragma once

#include <cstdio>
#include <string>

#include "tessera/render.hpp"

namespace tessera::cli {

class Progress {
 public:
  // print_every: plain-line period when not on a terminal (0: only the last).
  Progress(std::FILE* stream, int print_every, bool quiet);
  void update(const IterationReport& report);
  void finish();  // ends the redrawn line

 private:
  std::FILE* stream_;
  int print_every_;
  bool quiet_;
  bool terminal_;
  bool drawn_ = false;
  int first_iteration_ = -1;  // the first this Progress was shown
};

}  // namespace tessera::cli
