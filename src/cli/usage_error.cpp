#include "cli/usage_error.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <vector>

namespace tessera::cli {
namespace {

std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// The candidate nearest to `typed`, if it is near enough to be a slip.
std::string nearest(const std::string& typed, const std::vector<std::string>& candidates) {
  std::string best;
  std::size_t best_distance = std::max<std::size_t>(2, typed.size() / 4) + 1;
  for (const auto& candidate : candidates) {
    std::size_t distance = edit_distance(typed, candidate);
    if (distance < best_distance) {
      best = candidate;
      best_distance = distance;
    }
  }
  return best;
}

std::vector<std::string> option_names(const CLI::App& app) {
  std::vector<std::string> names;
  for (const CLI::Option* option : app.get_options()) {
    for (const auto& name : option->get_lnames()) names.push_back("--" + name);
    for (const auto& name : option->get_snames()) names.push_back("-" + name);
  }
  return names;
}

std::string one_line(std::string text) {
  std::replace(text.begin(), text.end(), '\n', ' ');
  while (!text.empty() && text.back() == ' ') text.pop_back();
  return text;
}

}  // namespace

std::string usage_error_message(CLI::App& app, const CLI::ParseError& error, int argc, char** argv) {
  auto names_of = [](CLI::App& parent) {
    std::vector<std::string> names;
    for (const CLI::App* sub : parent.get_subcommands([](CLI::App*) { return true; })) names.push_back(sub->get_name());
    return names;
  };
  // Follow the subcommands named on the command line ("models list").
  CLI::App* command = &app;
  std::string path = "tessera";
  int next = 1;  // the first argument not consumed as a subcommand name
  for (; next < argc; ++next) {
    std::string argument = argv[next];
    if (argument.rfind('-', 0) == 0) continue;
    auto names = names_of(*command);
    if (std::find(names.begin(), names.end(), argument) == names.end()) break;
    command = command->get_subcommand(argument);
    path += " " + argument;
  }
  const std::string help = fmt::format("see '{} --help'", path);

  auto subcommands = names_of(*command);
  if (!subcommands.empty()) {
    const std::string list = fmt::format("{}", fmt::join(subcommands, ", "));
    if (next < argc) {
      std::string typed = argv[next];
      std::string guess = nearest(typed, subcommands);
      return fmt::format("unknown command '{}'{} (commands of '{}': {})", typed,
                         guess.empty() ? "" : fmt::format(": did you mean '{}'?", guess), path, list);
    }
    if (dynamic_cast<const CLI::RequiredError*>(&error))
      return fmt::format("'{}' needs a command: {} ({})", path, list, help);
  }

  if (dynamic_cast<const CLI::ExtrasError*>(&error)) {
    // The first option that is no option of the command or of tessera.
    auto known = option_names(*command);
    auto app_known = option_names(app);
    known.insert(known.end(), app_known.begin(), app_known.end());
    for (int i = 1; i < argc; ++i) {
      std::string argument = argv[i];
      if (argument.rfind('-', 0) != 0 || argument == "-" || argument == "--") continue;
      std::string name = argument.substr(0, argument.find('='));
      if (std::find(known.begin(), known.end(), name) != known.end()) continue;
      std::string guess = nearest(name, known);
      return fmt::format("unknown option '{}'{} ({})", name,
                         guess.empty() ? "" : fmt::format(": did you mean '{}'?", guess), help);
    }
  }
  std::string message = one_line(error.what());
  // CLI11's words for an option given twice.
  if (auto at = message.find(": At Most 1 required but received"); at != std::string::npos)
    message = message.substr(0, at) + " is given more than once";
  return fmt::format("{} ({})", message, help);
}

}  // namespace tessera::cli
