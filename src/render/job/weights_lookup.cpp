#include "render/job/weights_lookup.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cstdlib>
#include <optional>

#include "tessera/error.hpp"

namespace tessera::job {

std::string default_weights_folder() {
  const char* set = std::getenv("TESSERA_WEIGHTS_DIR");
  return set && *set ? set : "models";
}

std::vector<std::filesystem::path> weights_search_folders() {
  std::vector<std::filesystem::path> folders{default_weights_folder()};
  const char* set = std::getenv("TESSERA_WEIGHTS_DIR");
  if (set && *set) return folders;
  const char* data_home = std::getenv("XDG_DATA_HOME");
  const char* home = std::getenv("HOME");
  if (data_home && *data_home) folders.push_back(std::filesystem::path(data_home) / "tessera" / "models");
  else if (home && *home) folders.push_back(std::filesystem::path(home) / ".local" / "share" / "tessera" / "models");
  return folders;
}

std::filesystem::path resolve_weights(const std::string& weights, const std::string& model) {
  auto find_named = [](const std::string& name) -> std::optional<std::filesystem::path> {
    for (const auto& folder : weights_search_folders())
      if (std::filesystem::exists(folder / (name + ".h5"))) return folder / (name + ".h5");
    return std::nullopt;
  };
  auto searched = [](const std::string& name) {
    std::vector<std::string> places;
    for (const auto& folder : weights_search_folders()) places.push_back((folder / (name + ".h5")).string());
    return fmt::format("{}", fmt::join(places, " nor "));
  };
  if (!weights.empty()) {
    std::filesystem::path path(weights);
    if (std::filesystem::is_directory(path)) fail("--weights '", weights, "' is a folder, not a weights file");
    if (std::filesystem::exists(path)) return path;
    // A bare name ("vgg19") means a file in the weights folders.
    if (!path.has_extension() && !path.has_parent_path()) {
      if (auto found = find_named(weights)) return *found;
      fail("weights '", weights, "' not found (nor ", searched(weights),
           "; import them with 'tessera models import' or tools/fetch-models.sh)");
    }
    fail("weights file '", weights, "' not found");
  }
  if (auto found = find_named(model)) return *found;
  fail("no weights given and none found at ", searched(model),
       ": pass --weights FILE (an .h5, or a .caffemodel or .pth, imported on first use), or import them with "
       "tools/fetch-models.sh");
}

}  // namespace tessera::job
