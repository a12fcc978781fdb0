#include "cli/threads.hpp"

#include <fmt/format.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <string>

namespace tessera::cli {
namespace {

int positive_from_environment(const char* name) {
  const char* text = std::getenv(name);
  if (!text || !*text) return 0;
  char* end = nullptr;
  long value = std::strtol(text, &end, 10);
  return end && *end == '\0' && value > 0 && value < 1 << 20 ? int(value) : 0;
}

}  // namespace

ThreadChoice choose_threads(int requested) {
  if (requested > 0) return {requested, "--threads"};
  const int online = std::max(1, int(sysconf(_SC_NPROCESSORS_ONLN)));
  int allowed = online;
  cpu_set_t mask;
  CPU_ZERO(&mask);
  if (sched_getaffinity(0, sizeof mask, &mask) == 0) allowed = std::max(1, CPU_COUNT(&mask));
  ThreadChoice choice{allowed, fmt::format("the {} CPUs this process may use", allowed)};
  if (int per_task = positive_from_environment("SLURM_CPUS_PER_TASK"); per_task > 0 && per_task < choice.threads)
    choice = {per_task, fmt::format("Slurm's --cpus-per-task {}", per_task)};
  // Ranks that were not bound each see the whole node: share it.
  int local_ranks = positive_from_environment("OMPI_COMM_WORLD_LOCAL_SIZE");
  if (local_ranks == 0) local_ranks = positive_from_environment("MPI_LOCALNRANKS");
  if (local_ranks > 1 && allowed == online) {
    int share = std::max(1, choice.threads / local_ranks);
    choice = {share, fmt::format("{} CPUs shared by {} ranks on this node", choice.threads, local_ranks)};
  }
  return choice;
}

void restart_with_passive_wait(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY")) return;  // the user's choice, or already restarted
  if (setenv("OMP_WAIT_POLICY", "passive", 1) != 0) return;
  execv("/proc/self/exe", argv);
  // Not restarted (no /proc): go on with libgomp's default wait.
}

}  // namespace tessera::cli
