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

#include "tessera/io/import.hpp"
#include "tessera/model.hpp"

namespace tessera::io::detail {

// --- SHA-256 (sha256.cpp)
class Sha256 {
 public:
  void update(const std::uint8_t* data, std::size_t size);
  std::string hex_digest();  // finishes the hash; call once

 private:
  void compress();
  std::array<std::uint32_t, 8> state_ = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                         0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  std::array<std::uint8_t, 64> block_{};
  std::size_t block_used_ = 0;
  std::uint64_t total_bytes_ = 0;
};
std::string sha256_of_file(const std::filesystem::path& path);

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
