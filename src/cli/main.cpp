// tessera: neural style transfer at poster resolutions.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>

#include "cli/commands.hpp"
#include "cli/signals.hpp"
#include "cli/threads.hpp"
#include "cli/usage_error.hpp"
#include "comm/mpi_communicator.hpp"
#include "render/job/agreement.hpp"
#include "tessera/build_info.hpp"
#include "tessera/error.hpp"

namespace {
std::unique_ptr<tessera::Communicator> g_communicator;
}

tessera::Communicator& tessera::cli::process_communicator() {
  if (!g_communicator) g_communicator = std::make_unique<tessera::SingleProcess>();
  return *g_communicator;
}

// One message per failure, from the rank that failed; under MPI that rank
// then ends the whole job so that no other rank waits for it.
static int report_failure(const std::string& message) {
  auto& communicator = tessera::cli::process_communicator();
  if (communicator.size() > 1) {
    spdlog::error("rank {}: {}", communicator.rank(), message);
    tessera::MpiCommunicator::abort_job(1);
  }
  spdlog::error("{}", message);
  return 1;
}

int main(int argc, char** argv) {
  tessera::cli::restart_with_passive_wait(argv);
  // Before anything starts a thread: each thread started later inherits the
  // blocked signals (see cli/signals.hpp for why no computing thread may
  // take one).
  try {
    tessera::cli::start_signal_thread();
  } catch (const tessera::Error& e) {
    std::fprintf(stderr, "tessera: error: %s\n", e.what());
    return 1;
  }
  // Messages go to stderr so that stdout stays clean for tables and JSON.
  auto logger = spdlog::stderr_color_mt("tessera");
  logger->set_pattern("tessera: %^%l%$: %v");
  spdlog::set_default_logger(logger);

  CLI::App app{"tessera: Gatys neural style transfer for poster-sized images"};
  app.set_version_flag("--version", std::string("tessera ") + tessera::build_info::version);
  app.require_subcommand(1);
  app.fallthrough(true);  // -v after the subcommand too
  bool verbose = false;
  app.add_flag("-v,--verbose", verbose, "More detail in the log");
  std::vector<std::pair<CLI::App*, tessera::cli::Command>> commands;
  auto info = tessera::cli::add_info_command(app);
  commands.emplace_back(app.get_subcommand("info"), info);
  auto render = tessera::cli::add_render_command(app);
  commands.emplace_back(app.get_subcommand("render"), render);
  auto models = tessera::cli::add_models_command(app);
  commands.emplace_back(app.get_subcommand("models"), models);
  auto bench = tessera::cli::add_bench_command(app);
  commands.emplace_back(app.get_subcommand("bench"), bench);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version print and succeed; a usage error is one line
    // and exit status 2, as for any command-line tool.
    if (e.get_exit_code() == 0) return app.exit(e);
    spdlog::error("{}", tessera::cli::usage_error_message(app, e, argc, argv));
    return 2;
  }
  if (verbose) spdlog::set_level(spdlog::level::debug);

  try {
    if (tessera::launched_by_mpi()) {
      g_communicator = std::make_unique<tessera::MpiCommunicator>(&argc, &argv);
      // Progress and notes from rank 0 only; errors from any rank.
      if (g_communicator->rank() != 0) spdlog::set_level(spdlog::level::err);
    }
    for (auto& [subcommand, run] : commands)
      if (subcommand->parsed()) return run();
  } catch (const tessera::job::AgreedFailure& e) {
    // Every rank knows; each exits on its own, and one says why.
    auto& communicator = tessera::cli::process_communicator();
    if (e.speak())
      spdlog::error("{}{}", communicator.rank() == 0 ? std::string() : fmt::format("rank {}: ", communicator.rank()), e.what());
    return 1;
  } catch (const tessera::Error& e) {
    return report_failure(e.what());
  } catch (const std::bad_alloc&) {
    return report_failure("out of memory (try a smaller --size, or more --tiles)");
  } catch (const std::exception& e) {
    return report_failure(e.what());
  }
  return 1;
}
