// How many CPU threads a process computes with, and how they wait.
#pragma once

#include <string>

namespace tessera::cli {

struct ThreadChoice {
  int threads = 1;
  std::string why;  // for the log: where the number came from
};

// `requested` > 0 is taken as it is. 0: the CPUs this process may run on
// (its affinity mask), no more than Slurm's --cpus-per-task, shared among
// the MPI ranks on this node when they were not bound to CPUs of their own.
ThreadChoice choose_threads(int requested);

// OpenMP threads that spin while they wait take the CPUs from anything
// else on the machine (another rank, another job): at 256 px a render ran
// 10x slower beside a second process. libgomp reads OMP_WAIT_POLICY only
// as it loads, so when the user has not chosen one this sets "passive" and
// runs the program again (the same process, argv and environment
// otherwise). Call first thing in main; returns only when no restart was
// needed or possible.
void restart_with_passive_wait(char** argv);

}  // namespace tessera::cli
