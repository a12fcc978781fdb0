#include "render/job/memory_check.hpp"

#include <fmt/format.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace tessera::job {
namespace {

std::optional<double> read_number(const std::string& path) {
  std::ifstream in(path);
  std::string word;
  if (!(in >> word)) return std::nullopt;
  try {
    std::size_t used = 0;
    double value = std::stod(word, &used);  // "max" (no limit) fails here
    if (used != word.size()) return std::nullopt;
    return value;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

// cgroup v2: the process's group from /proc/self/cgroup ("0::/path"), its
// limit and its current use.
std::optional<double> cgroup_headroom() {
  std::ifstream in("/proc/self/cgroup");
  std::string line, group;
  while (std::getline(in, line))
    if (line.rfind("0::", 0) == 0) group = line.substr(3);
  if (group.empty()) return std::nullopt;
  const std::string folder = "/sys/fs/cgroup" + (group == "/" ? std::string() : group);
  auto limit = read_number(folder + "/memory.max");
  auto used = read_number(folder + "/memory.current");
  if (!limit || !used) return std::nullopt;
  return *limit > *used ? *limit - *used : 0.0;
}

}  // namespace

std::optional<double> available_memory_bytes() {
  std::optional<double> available;
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string name;
    double kib = 0;
    if (fields >> name >> kib && name == "MemAvailable:") available = kib * 1024.0;
  }
  if (auto headroom = cgroup_headroom(); headroom && (!available || *headroom < *available)) available = headroom;
  return available;
}

int ranks_on_this_node() {
  for (const char* variable : {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"}) {
    if (const char* value = std::getenv(variable)) {
      int ranks = std::atoi(value);
      if (ranks > 0) return ranks;
    }
  }
  return 1;
}

std::string memory_shortfall(double per_rank, int ranks_here, double available) {
  const double needed = per_rank * ranks_here;
  if (needed <= available) return {};
  constexpr double GiB = double(1u << 30);
  const std::string who =
      ranks_here > 1 ? fmt::format("{} ranks on this node need about {:.1f} GiB each", ranks_here, per_rank / GiB)
                     : fmt::format("the render needs about {:.1f} GiB", per_rank / GiB);
  return fmt::format("{}, more than the {:.1f} GiB this machine has free: it may be killed for memory. "
                     "Use more --tiles (or --tiles auto with --memory-per-rank), more ranks, --precision bf16, "
                     "or --optimizer adam",
                     who, available / GiB);
}

}  // namespace tessera::job
