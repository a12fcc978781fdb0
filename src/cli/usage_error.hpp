// Command-line mistakes in one line: what was wrong, the nearest option or
// command where a name looks mistyped, and where the help is.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

namespace tessera::cli {

std::string usage_error_message(CLI::App& app, const CLI::ParseError& error, int argc, char** argv);

}  // namespace tessera::cli
