// Where a render's weights are: a file, or a name looked up in the weights
// folders (the same folders `models import` writes to and `models list` reads).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace tessera::job {

// The folder `models import` writes to and `models list` reads by default:
// $TESSERA_WEIGHTS_DIR, else ./models.
std::string default_weights_folder();
// Where a weights name ("vgg19") is looked for, in order: $TESSERA_WEIGHTS_DIR
// alone when set; else ./models, then $XDG_DATA_HOME/tessera/models
// (~/.local/share/tessera/models).
std::vector<std::filesystem::path> weights_search_folders();

// The weights file of `--weights` (a path, or a bare name looked up in the
// folders), or, when it is empty, `model`'s file in the folders. Throws
// tessera::Error naming every place looked at.
std::filesystem::path resolve_weights(const std::string& weights, const std::string& model);

}  // namespace tessera::job
