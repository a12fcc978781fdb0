// Importing pretrained weights from the files neural-style and neural-style-pt
// use: Caffe .caffemodel (VGG_ILSVRC_19_layers, VGG_ILSVRC_16_layers,
// nin_imagenet_conv) and PyTorch .pth state_dicts (zip and legacy formats).
//
// The format is detected from the content, not the name. Pickles are read by a
// restricted reader that only understands tensors: nothing in a weight file is
// ever executed.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tessera/weights.hpp"

namespace tessera::io {

struct ImportOptions {
  // "vgg19", "vgg16", "nin"; empty = infer from the layer names and shapes.
  std::string architecture;
  // For .pth files: state_dict key prefix (before ".weight"/".bias") -> tessera
  // convolution name, or "input" for a 3x3x1x1 colour convolution that is
  // folded into the input ColorTransform. Empty = detect the key layout.
  std::vector<std::pair<std::string, std::string>> key_map;
  // The backbone's input convention. Default: ColorTransform::caffe() for
  // caffemodels and torchvision-keyed VGG files (neural-style-pt's .pth files
  // are converted caffemodels); the folded colour convolution for files that
  // carry one (LinearStyleTransfer's vgg_r31.pth and friends).
  std::optional<ColorTransform> input;

  // Parses "a=b,c=d" (spaces around items are ignored); throws tessera::Error
  // on an item without '=' or with an empty side, or a key given twice.
  static std::vector<std::pair<std::string, std::string>> parse_map(std::string_view text);
};

struct ImportResult {
  WeightSet weights;
  // Things the user may want to know: ignored keys, the inferred architecture,
  // the input convention chosen.
  std::vector<std::string> notes;
};

// Reads `source` (.caffemodel, .pth zip or legacy; a tessera .h5 is read as is),
// records provenance (source_file, source_sha256, source_bytes, source_format,
// key_layout, imported_by) and validates the result against its architecture.
ImportResult import_weights(const std::filesystem::path& source, const ImportOptions& options = {});

// Whether import_weights would convert `source` (anything but an HDF5 file),
// told by its first bytes as import_weights tells them.
bool needs_conversion(const std::filesystem::path& source);

}  // namespace tessera::io
