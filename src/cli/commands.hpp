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

// The folder `models import` writes to and `models list` reads by default:
// $TESSERA_WEIGHTS_DIR, else ./models.
std::string default_weights_folder();
// Where a weights name ("vgg19") is looked for, in order: $TESSERA_WEIGHTS_DIR
// alone when set; else ./models, then $XDG_DATA_HOME/tessera/models
// (~/.local/share/tessera/models).
std::vector<std::filesystem::path> weights_search_folders();

}  // namespace tessera::cli
