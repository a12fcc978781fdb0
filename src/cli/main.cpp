// tessera: neural style transfer at poster resolutions.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>

#include "cli/commands.hpp"
#include "tessera/build_info.hpp"
#include "tessera/error.hpp"

int main(int argc, char** argv) {
  // Messages go to stderr so that stdout stays clean for tables and JSON.
  auto logger = spdlog::stderr_color_mt("tessera");
  logger->set_pattern("tessera: %^%l%$: %v");
  spdlog::set_default_logger(logger);

  CLI::App app{"tessera: Gatys neural style transfer for poster-sized images"};
  app.set_version_flag("--version", std::string("tessera ") + tessera::build_info::version);
  app.require_subcommand(1);
  app.fallthrough(false);
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
    return app.exit(e);
  }
  if (verbose) spdlog::set_level(spdlog::level::debug);

  try {
    for (auto& [subcommand, run] : commands)
      if (subcommand->parsed()) return run();
  } catch (const tessera::Error& e) {
    spdlog::error("{}", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    spdlog::error("out of memory (try a smaller --size)");
    return 1;
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
  return 1;
}
