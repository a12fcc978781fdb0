#include "cli/config_file.hpp"

#include <toml++/toml.h>

#include <sstream>

#include "tessera/error.hpp"

namespace tessera::cli {
namespace {

std::string scalar_text(const toml::node& node, const std::string& where) {
  if (auto s = node.value<std::string>()) return *s;
  if (auto b = node.value_exact<bool>()) return *b ? "true" : "false";
  if (auto i = node.value_exact<std::int64_t>()) return std::to_string(*i);
  if (auto d = node.value_exact<double>()) {
    std::ostringstream text;
    text.precision(17);
    text << *d;
    return text.str();
  }
  fail(where, ": expected a string, number or boolean");
}

}  // namespace

void apply_config_file(CLI::App& command, const std::filesystem::path& path) {
  toml::table table;
  try {
    table = toml::parse_file(path.string());
  } catch (const toml::parse_error& e) {
    const auto& begin = e.source().begin;
    fail("cannot read config '", path.string(), "': ", e.description(), " (line ", begin.line, ", column ",
         begin.column, ")");
  }
  for (const auto& [key_view, node] : table) {
    std::string key(key_view.str());
    std::string name = key;
    for (char& c : name)
      if (c == '_') c = '-';
    std::string where = "config '" + path.string() + "', key '" + key + "'";
    if (name == "config") fail(where, ": a config cannot name another config");
    CLI::Option* option = nullptr;
    try {
      option = command.get_option("--" + name);
    } catch (const CLI::OptionNotFound&) {
      fail(where, ": no such setting (see 'tessera ", command.get_name(), " --help')");
    }
    if (option->count() > 0) continue;  // the command line wins
    std::vector<std::string> values;
    if (const auto* array = node.as_array()) {
      std::string joined;
      for (const auto& item : *array) joined += (joined.empty() ? "" : ",") + scalar_text(item, where);
      values.push_back(joined);
    } else {
      values.push_back(scalar_text(node, where));
    }
    try {
      for (const auto& v : values) option->add_result(v);
      option->run_callback();
    } catch (const CLI::Error& e) {
      fail(where, ": ", e.what());
    }
  }
}

}  // namespace tessera::cli
