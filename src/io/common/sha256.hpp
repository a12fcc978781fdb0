// SHA-256 (FIPS 180-4): the identity of imported weight files, input images
// and every block of a checkpoint. No library in the dependency set offers
// it, and it is short.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

namespace tessera::io::detail {

class Sha256 {
 public:
  void update(const std::uint8_t* data, std::size_t size);
  void update(const void* data, std::size_t size) { update(static_cast<const std::uint8_t*>(data), size); }
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

}  // namespace tessera::io::detail
