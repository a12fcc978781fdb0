// The memory this machine can give a render, measured before it starts, so
// that a tile grid too large for it is said at once rather than met as an
// out-of-memory kill hours in.
#pragma once

#include <optional>
#include <string>

namespace tessera::job {

// Bytes this process could still allocate: the kernel's MemAvailable, or
// less where a cgroup (Slurm's, a container's) limits the process. Empty
// when neither can be read.
std::optional<double> available_memory_bytes();

// The ranks of this job on this node (Open MPI's or Slurm's count), 1
// outside MPI.
int ranks_on_this_node();

// A warning line when `ranks_here` ranks of about `per_rank` bytes each
// need more than `available`; empty when they fit.
std::string memory_shortfall(double per_rank, int ranks_here, double available);

}  // namespace tessera::job
