#include "render/job/imported_weights.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <regex>
#include <set>

#include "tessera/error.hpp"
#include "tessera/io/import.hpp"
#include "tessera/io/weights_file.hpp"

namespace tessera::job {
namespace fs = std::filesystem;

namespace {

// Holds an exclusive lock on a file for its lifetime. Where the file system
// has no locks, imports are still safe (each writes beside and renames),
// only possibly repeated.
class FolderLock {
 public:
  explicit FolderLock(const fs::path& path) {
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) fail("cannot open the lock file '", path.string(), "': ", std::strerror(errno));
    while (::flock(fd_, LOCK_EX) != 0) {
      if (errno == EINTR) continue;
      if (errno == ENOLCK || errno == EOPNOTSUPP) break;
      fail("cannot lock '", path.string(), "': ", std::strerror(errno));
    }
  }
  FolderLock(const FolderLock&) = delete;
  FolderLock& operator=(const FolderLock&) = delete;
  ~FolderLock() { ::close(fd_); }  // closing releases the lock

 private:
  int fd_ = -1;
};

std::uint64_t fnv1a(const std::string& text) {
  std::uint64_t hash = 1469598103934665603ull;
  for (unsigned char c : text) hash = (hash ^ c) * 1099511628211ull;
  return hash;
}

}  // namespace

bool needs_import(const fs::path& weights) {
  // A damaged .h5 is reported by the reader, not sent to the importers.
  if (weights.extension() == ".h5" || weights.extension() == ".hdf5") return false;
  return io::needs_conversion(weights);
}

std::string architecture_from_prototxt(const fs::path& prototxt) {
  std::ifstream file(prototxt);
  if (!file) fail("--proto-file: cannot read '", prototxt.string(), "'");
  std::set<std::string> names;
  const std::regex name_field(R"(name\s*:\s*"([^"]*)\")");
  std::string line;
  while (std::getline(file, line))
    for (std::sregex_iterator it(line.begin(), line.end(), name_field), end; it != end; ++it)
      names.insert((*it)[1].str());
  if (names.count("conv5_4")) return "vgg19";
  if (names.count("conv5_3")) return "vgg16";
  for (const auto& name : names)
    if (name.starts_with("cccp")) return "nin";
  fail("--proto-file '", prototxt.string(),
       "' names no layer of a backbone tessera knows (conv5_4: VGG-19, conv5_3: VGG-16, cccp*: NIN)");
}

fs::path weights_cache_folder() {
  const char* cache_home = std::getenv("XDG_CACHE_HOME");
  if (cache_home && *cache_home) return fs::path(cache_home) / "tessera" / "weights";
  const char* home = std::getenv("HOME");
  if (home && *home) return fs::path(home) / ".cache" / "tessera" / "weights";
  fail("neither XDG_CACHE_HOME nor HOME is set, so there is no cache for imported weights: import them first with "
       "'tessera models import FILE -o FILE.h5' and pass the .h5");
}

fs::path cached_import(const fs::path& source, const std::string& architecture, std::vector<std::string>& notes) {
  std::error_code ec;
  const fs::path absolute = fs::weakly_canonical(source, ec);
  if (ec) fail("cannot resolve the weights path '", source.string(), "': ", ec.message());
  const auto size = fs::file_size(absolute, ec);
  if (ec) fail("cannot read the size of '", source.string(), "': ", ec.message());
  const auto modified = fs::last_write_time(absolute, ec);
  if (ec) fail("cannot read the modification time of '", source.string(), "': ", ec.message());

  // The name says which file it came from; the hash, which version of it.
  const std::string identity = fmt::format("{}\n{}\n{}\n{}", absolute.string(), size,
                                           modified.time_since_epoch().count(), architecture);
  const fs::path folder = weights_cache_folder();
  const fs::path cached =
      folder / fmt::format("{}-{:016x}.h5", absolute.stem().string(), fnv1a(identity));

  fs::create_directories(folder, ec);
  if (ec) fail("cannot create the weights cache '", folder.string(), "': ", ec.message());
  FolderLock lock(folder / ".lock");
  if (fs::exists(cached)) {
    notes.push_back(fmt::format("weights {} imported earlier from {}", cached.string(), source.string()));
    return cached;
  }
  spdlog::info("importing {} into tessera's weights (once; kept in {})", source.string(), folder.string());
  io::ImportOptions options;
  options.architecture = architecture;
  io::ImportResult result = io::import_weights(source, options);
  for (const auto& note : result.notes) spdlog::info("{}", note);
  io::write_weights(cached, result.weights);
  notes.push_back(fmt::format("weights {} imported from {}", cached.string(), source.string()));
  return cached;
}

}  // namespace tessera::job
