// The subcommands of `tessera`. Each registers its options on the app and
// returns the function that runs it once the command line is parsed.
#pragma once

#include <CLI/CLI.hpp>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "tessera/communicator.hpp"

namespace tessera::cli {

using Command = std::function<int()>;

Command add_info_command(CLI::App& app);
Command add_render_command(CLI::App& app);
Command add_models_command(CLI::App& app);
Command add_bench_command(CLI::App& app);

// Exit codes beyond 0 (success) and 1 (an error with one line of message).
inline constexpr int kExitInterrupted = 130;  // as a shell reports SIGINT

// This process's place in the job: MPI when started by mpirun or srun, a
// single process otherwise.
Communicator& process_communicator();

}  // namespace tessera::cli
