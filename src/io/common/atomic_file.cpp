#include "common/atomic_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "tessera/error.hpp"

namespace tessera::io::detail {

TemporaryFile::TemporaryFile(const std::filesystem::path& target) {
  static std::atomic<unsigned> counter{0};
  std::filesystem::path folder = target.parent_path().empty() ? std::filesystem::path(".") : target.parent_path();
  // Hidden and unique, so that listings and other writers never take it
  // for a finished file.
  // (Appended piece by piece: GCC 12 warns falsely on "." + std::string.)
  std::string name(".");
  name += target.filename().string();
  name += ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
  path_ = folder / name;
}

TemporaryFile::~TemporaryFile() {
  if (!committed_) {
    std::error_code ignored;
    std::filesystem::remove(path_, ignored);
  }
}

void TemporaryFile::commit(const std::filesystem::path& target, const std::string& what) {
  sync_to_disk(path_);
  std::error_code ec;
  std::filesystem::rename(path_, target, ec);
  if (ec) fail("cannot move the new ", what, " into place at '", target.string(), "': ", ec.message());
  committed_ = true;
}

void sync_to_disk(const std::filesystem::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("cannot reopen '", path.string(), "' to flush it: ", std::strerror(errno));
  int status = ::fsync(fd);
  int saved = errno;
  ::close(fd);
  if (status != 0) fail("fsync of '", path.string(), "' failed: ", std::strerror(saved));
}

}  // namespace tessera::io::detail
