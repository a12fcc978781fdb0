// Private to src/io: files replaced atomically, so that a reader finds the
// old file or the whole new one, never a part.
#pragma once

#include <filesystem>
#include <string>

namespace tessera::io::detail {

// A hidden temporary file in the target's folder, flushed to disk, then
// renamed over the target; removed unless the write got as far as that.
class TemporaryFile {
 public:
  explicit TemporaryFile(const std::filesystem::path& target);
  ~TemporaryFile();
  TemporaryFile(const TemporaryFile&) = delete;
  TemporaryFile& operator=(const TemporaryFile&) = delete;
  const std::filesystem::path& path() const { return path_; }
  // fsync, then rename over the target; `what` names the file for messages.
  void commit(const std::filesystem::path& target, const std::string& what);

 private:
  std::filesystem::path path_;
  bool committed_ = false;
};

// fsync: after a power cut a renamed file is then whole, never empty.
void sync_to_disk(const std::filesystem::path& path);

}  // namespace tessera::io::detail
