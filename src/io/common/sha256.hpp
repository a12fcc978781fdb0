// SHA-256: the identity of imported weight files, input images and every
// block of a checkpoint, from OpenSSL's EVP interface (its assembly kernels
// use the CPU's SHA extensions where it has them).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

struct evp_md_ctx_st;

namespace tessera::io::detail {

class Sha256 {
 public:
  Sha256();
  void update(const std::uint8_t* data, std::size_t size);
  void update(const void* data, std::size_t size) { update(static_cast<const std::uint8_t*>(data), size); }
  std::string hex_digest();  // finishes the hash; call once

 private:
  struct Free {
    void operator()(evp_md_ctx_st* context) const;
  };
  std::unique_ptr<evp_md_ctx_st, Free> context_;
};

std::string sha256_of_file(const std::filesystem::path& path);

}  // namespace tessera::io::detail
