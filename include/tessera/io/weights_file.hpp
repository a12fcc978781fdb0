// tessera's own weight file: one HDF5 file per backbone (or per prefix of one).
//
// Importers (tessera/io/import.hpp) turn .caffemodel and .pth files into a
// WeightSet once; every later run reads this file, which is fast to load,
// self-describing and checked on the way in.
//
// Layout, format_version 1 (HDF5 1.8+ file format, written by the C API):
//
//   /                         root group, attributes:
//     format          string  "tessera-weights"
//     format_version  int32   1
//     architecture    string  "vgg19" | "vgg16" | "nin"
//     conv_count      int32   number of groups under /convs
//     input_matrix    float32 [3][3]   ColorTransform::matrix, row = output channel
//     input_bias      float32 [3]      ColorTransform::bias
//   /provenance               group; one string attribute per WeightSet::provenance
//                             entry (source_file, source_sha256, source_format, ...)
//   /convs                    group; one subgroup per convolution, in network order:
//     /convs/<NN>_<name>      NN = zero-padded position (00, 01, ...), name = the
//                             Caffe layer name ("conv1_1", "cccp8-1024"); the order
//                             comes from NN, never from HDF5's link order.
//       weight  float32 [out][in][kh][kw]   (OIHW, as in Caffe and PyTorch)
//       bias    float32 [out]
//
// Every dataset is stored as one chunk with HDF5's Fletcher-32 checksum filter,
// so a flipped bit in the weights is reported on read instead of being used;
// the 1.8+ file format also checksums the metadata.
//
// Strings are written as fixed-length UTF-8; readers accept variable-length too.
// Reading checks the format tag, the version, every rank and shape against the
// data sizes and the bias length, then validates the set against the named
// architecture (tessera::validate_weights). Any failure is a tessera::Error that
// names the file and, for library failures, the HDF5 call and HDF5's message.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "tessera/weights.hpp"

namespace tessera::io {

inline constexpr const char* weight_file_format = "tessera-weights";
inline constexpr int weight_file_version = 1;
inline constexpr const char* weight_file_extension = ".h5";

WeightSet read_weights(const std::filesystem::path& path);

// Validates `weights` against its architecture, then writes them atomically: a
// temporary file in the same folder, flushed, then renamed over `path`.
void write_weights(const std::filesystem::path& path, const WeightSet& weights);

struct WeightFileSummary {
  std::string name;  // file name without the extension
  std::filesystem::path path;
  std::string architecture;
  int conv_count = 0;
  std::string deepest_conv;  // name of the last convolution in the file
  std::uintmax_t size_bytes = 0;
  std::string source;   // provenance source_file, or "" when not recorded
  std::string problem;  // empty for a good file; otherwise why it cannot be read
};

// Every *.h5 file in `folder`, sorted by name. Reads only metadata (no weights);
// a file that fails to open is listed with `problem` set rather than throwing.
// Throws only if `folder` itself cannot be listed.
std::vector<WeightFileSummary> list_weight_files(const std::filesystem::path& folder);

}  // namespace tessera::io
