// Weights a render imports itself: neural-style's `-model_file` names a
// .caffemodel, so `render --weights FILE` (or `--model-file FILE`) accepts the
// files `models import` reads. The import runs once; its HDF5 result is kept
// in a cache and reused while the source file is unchanged.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace tessera::job {

// True when `weights` is not tessera's HDF5, so a render must import it
// first: told by its first bytes, except that a file named .h5 is always
// read as tessera's (and refused as such when it is not).
bool needs_import(const std::filesystem::path& weights);

// The backbone a neural-style deploy .prototxt describes, from its layer
// names: vgg19 (conv5_4), vgg16 (conv5_3) or nin (cccp layers).
std::string architecture_from_prototxt(const std::filesystem::path& prototxt);

// $XDG_CACHE_HOME/tessera/weights, else ~/.cache/tessera/weights.
std::filesystem::path weights_cache_folder();

// The cached import of `source` for `architecture` ("" infers it), made now
// unless one made from this file (its path, size and modification time) is
// there. Processes that share the cache wait for one another's import rather
// than repeating it. What was done is added to `notes`.
std::filesystem::path cached_import(const std::filesystem::path& source, const std::string& architecture,
                                    std::vector<std::string>& notes);

}  // namespace tessera::job
