#include "common/sha256.hpp"

#include <openssl/err.h>
#include <openssl/evp.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <vector>

#include "tessera/error.hpp"

namespace tessera::io::detail {
namespace {

// OpenSSL's own reason for the last failure, or a plain word where it left none.
[[noreturn]] void fail_openssl(const char* call) {
  std::array<char, 256> reason{};
  const unsigned long code = ERR_get_error();
  if (code != 0) ERR_error_string_n(code, reason.data(), reason.size());
  fail("SHA-256: OpenSSL's ", call, " failed", code != 0 ? ": " : "", code != 0 ? reason.data() : "");
}

}  // namespace

void Sha256::Free::operator()(evp_md_ctx_st* context) const { EVP_MD_CTX_free(context); }

Sha256::Sha256() : context_(EVP_MD_CTX_new()) {
  if (!context_) fail_openssl("EVP_MD_CTX_new");
  if (EVP_DigestInit_ex(context_.get(), EVP_sha256(), nullptr) != 1) fail_openssl("EVP_DigestInit_ex");
}

void Sha256::update(const std::uint8_t* data, std::size_t size) {
  if (size != 0 && EVP_DigestUpdate(context_.get(), data, size) != 1) fail_openssl("EVP_DigestUpdate");
}

std::string Sha256::hex_digest() {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int length = 0;
  if (EVP_DigestFinal_ex(context_.get(), digest.data(), &length) != 1) fail_openssl("EVP_DigestFinal_ex");
  static const char* hex = "0123456789abcdef";
  std::string text;
  for (unsigned int i = 0; i < length; ++i) {
    text += hex[digest[i] >> 4];
    text += hex[digest[i] & 15];
  }
  return text;
}

std::string sha256_of_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open '", path.string(), "' to hash it: ", std::strerror(errno));
  Sha256 hash;
  std::vector<char> buffer(1 << 20);
  while (in) {
    in.read(buffer.data(), std::streamsize(buffer.size()));
    hash.update(reinterpret_cast<const std::uint8_t*>(buffer.data()), std::size_t(in.gcount()));
  }
  if (in.bad()) fail("error reading '", path.string(), "' while hashing it");
  return hash.hex_digest();
}

}  // namespace tessera::io::detail
