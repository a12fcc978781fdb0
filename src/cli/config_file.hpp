// A TOML config says the same things as the command line: each key is an
// option's long name (kebab-case or snake_case); flags given on the command
// line win over the file.
#pragma once

#include <CLI/CLI.hpp>

#include <filesystem>

namespace tessera::cli {

// Applies `path` to the options of `command` that the command line left
// unset. Throws tessera::Error naming the file and key on an unknown key, a
// value of the wrong kind, or a TOML syntax error (with its line).
void apply_config_file(CLI::App& command, const std::filesystem::path& path);

}  // namespace tessera::cli
