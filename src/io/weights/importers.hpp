// Private to src/io/weights: the per-format importers behind import_weights,
// and the small helpers they share.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "../common/sha256.hpp"
#include "tessera/io/import.hpp"
#include "tessera/model.hpp"

namespace tessera::io::detail {


// --- a read-only memory map of a whole file (pth.cpp)
class MappedFile {
 public:
  explicit MappedFile(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  std::span<const std::uint8_t> bytes() const { return {data_, size_}; }

 private:
  const std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
};

// --- importers. Each fills weights (architecture, input, convs in network
// order), provenance "source_format" and "key_layout", and notes; import.cpp
// adds the file's identity and validates the result.
ImportResult import_pth_zip(const std::filesystem::path& path, const ImportOptions& options);
ImportResult import_pth_legacy(const std::filesystem::path& path, const ImportOptions& options);
ImportResult import_caffemodel(const std::filesystem::path& path, const ImportOptions& options);

// True when `shape` (OIHW) is the shape of `layer`.
bool conv_shape_matches(const LayerSpec& layer, const std::vector<std::int64_t>& shape);
std::string shape_string(const std::vector<std::int64_t>& shape);

}  // namespace tessera::io::detail
