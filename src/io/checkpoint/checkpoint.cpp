// Checkpoint files (layout in include/tessera/io/checkpoint.hpp), through
// HDF5's C API with every status checked (common/hdf5_file.hpp).
#include "tessera/io/checkpoint.hpp"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <ctime>
#include <cstdio>
#include <set>

#include <zlib.h>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "common/atomic_file.hpp"
#include "common/hdf5_file.hpp"
#include "common/sha256.hpp"
#include "tessera/error.hpp"

namespace tessera::io {
namespace {

using namespace detail;
using json = nlohmann::json;

constexpr const char* checkpoint_kind = "tessera checkpoint";

// The vectors' own check, beside HDF5's Fletcher-32 per chunk: CRC-32 runs
// at gigabytes a second (SHA-256 here managed 115 MB/s, half the time of an
// 8K checkpoint).
std::string crc32_of(std::span<const float> values) {
  const auto* bytes = reinterpret_cast<const Bytef*>(values.data());
  uLong crc = crc32_z(0L, bytes, values.size_bytes());
  char text[16];
  std::snprintf(text, sizeof text, "%08lx", crc & 0xffffffffUL);
  return text;
}

std::string sha256_of(const std::string& text) {
  Sha256 hash;
  hash.update(text.data(), text.size());
  return hash.hex_digest();
}

std::string utc_now() {
  std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm parts{};
  gmtime_r(&now, &parts);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &parts);
  return text;
}

json state_json(const RenderState& state) {
  json scalars = json::object();
  for (const auto& [name, value] : state.optimizer_state.scalars) {
    if (!std::isfinite(value)) fail("cannot save the render's state: optimiser value '", name, "' is ", value);
    scalars[name] = value;
  }
  json arrays = json::object();
  for (const auto& [name, values] : state.optimizer_state.arrays) {
    for (double value : values)
      if (!std::isfinite(value)) fail("cannot save the render's state: optimiser array '", name, "' holds ", value);
    arrays[name] = values;
  }
  return {{"iterations_done", state.iterations_done},
          {"optimizer", state.optimizer},
          {"scalars", scalars},
          {"arrays", arrays},
          {"vectors", state.optimizer_state.vectors}};
}

RenderState state_from_json(const json& in) {
  RenderState state;
  state.iterations_done = in.at("iterations_done").get<int>();
  state.optimizer = in.at("optimizer").get<std::string>();
  state.optimizer_state.scalars = in.at("scalars").get<std::map<std::string, double>>();
  // Absent from checkpoints of earlier versions.
  if (in.contains("arrays"))
    state.optimizer_state.arrays = in.at("arrays").get<std::map<std::string, std::vector<double>>>();
  state.optimizer_state.vectors = in.at("vectors").get<std::vector<std::string>>();
  return state;
}

std::string header_json(const CheckpointHeader& header) {
  json out = {{"settings", header.settings},
              {"scale", header.scale},
              {"scale_count", header.scale_count},
              {"width", header.width},
              {"height", header.height},
              {"state", state_json(header.state)},
              {"ranks", header.ranks},
              {"tiles", header.tiles},
              {"written_at", header.written_at}};
  return out.dump();
}

CheckpointHeader parse_header(const H5File& file, const std::string& text) {
  CheckpointHeader header;
  try {
    json in = json::parse(text);
    header.settings = in.at("settings").get<std::map<std::string, std::string>>();
    header.scale = in.at("scale").get<int>();
    header.scale_count = in.at("scale_count").get<int>();
    header.width = in.at("width").get<int>();
    header.height = in.at("height").get<int>();
    header.state = state_from_json(in.at("state"));
    header.ranks = in.at("ranks").get<int>();
    header.tiles = in.at("tiles").get<std::string>();
    header.written_at = in.at("written_at").get<std::string>();
  } catch (const json::exception& e) {
    file.invalid("its header cannot be read (", e.what(), ")");
  }
  if (header.scale_count < 1 || header.scale < 0 || header.scale >= header.scale_count)
    file.invalid("scale ", header.scale + 1, " of ", header.scale_count);
  if (header.width < 1 || header.height < 1 || hsize_t(header.width) > max_dimension ||
      hsize_t(header.height) > max_dimension)
    file.invalid("image size ", header.width, "x", header.height);
  if (header.state.iterations_done < 0) file.invalid("iterations done: ", header.state.iterations_done);
  std::set<std::string> seen = {"image"};
  for (const auto& name : header.state.optimizer_state.vectors) {
    bool plain = !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    });
    if (!plain || !seen.insert(name).second) file.invalid("vector name '", name, "'");
  }
  return header;
}

}  // namespace

std::string render_state_text(const RenderState& state) { return state_json(state).dump(); }

RenderState parse_render_state(const std::string& text) {
  try {
    return state_from_json(json::parse(text));
  } catch (const json::exception& e) {
    fail("a render's state cannot be read (", e.what(), ")");
  }
}

std::vector<std::string> settings_differences(const std::map<std::string, std::string>& saved,
                                              const std::map<std::string, std::string>& now) {
  std::vector<std::string> lines;
  std::set<std::string> keys;
  for (const auto& [key, value] : saved) keys.insert(key);
  for (const auto& [key, value] : now) keys.insert(key);
  auto shown = [](const std::map<std::string, std::string>& settings, const std::string& key) {
    auto it = settings.find(key);
    return it == settings.end() ? std::string("(not recorded)") : "'" + it->second + "'";
  };
  for (const auto& key : keys) {
    auto a = saved.find(key), b = now.find(key);
    if (a != saved.end() && b != now.end() && a->second == b->second) continue;
    lines.push_back(key + ": saved " + shown(saved, key) + ", now " + shown(now, key));
  }
  return lines;
}

// --- writing

struct CheckpointWriter::Impl {
  std::filesystem::path target;
  CheckpointHeader header;
  TemporaryFile temporary;
  H5File file;
  H5Handle handle, vectors;
  std::vector<std::string> pending;  // vectors still to write, in order

  Impl(std::filesystem::path path, CheckpointHeader h)
      : target(std::move(path)), header(std::move(h)), temporary(target), file(temporary.path(), checkpoint_kind) {}
};

CheckpointWriter::CheckpointWriter(std::filesystem::path path, CheckpointHeader header)
    : impl_(std::make_unique<Impl>(std::move(path), std::move(header))) {
  Impl& w = *impl_;
  if (w.header.written_at.empty()) w.header.written_at = utc_now();
  const H5File& file = w.file;
  H5Handle access = TESSERA_H5_OWN(file, H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  // The 1.8+ format: checksummed superblock and object headers.
  TESSERA_H5(file, H5Pset_libver_bounds(access, H5F_LIBVER_V18, H5F_LIBVER_LATEST));
  w.handle = TESSERA_H5_OWN(file, H5Fcreate(file.path().c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, access), H5Fclose);
  write_string_attribute(file, w.handle, "format", checkpoint_format);
  write_int_attribute(file, w.handle, "format_version", checkpoint_version);
  std::string header_text = header_json(w.header);
  write_string_attribute(file, w.handle, "header", header_text);
  write_string_attribute(file, w.handle, "header_sha256", sha256_of(header_text));
  w.vectors = TESSERA_H5_OWN(file, H5Gcreate2(w.handle, "vectors", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
  w.pending.push_back("image");
  for (const auto& name : w.header.state.optimizer_state.vectors) w.pending.push_back(name);
}

CheckpointWriter::~CheckpointWriter() = default;

void CheckpointWriter::write(const std::string& name, std::span<const float> whole) {
  Impl& w = *impl_;
  if (w.pending.empty() || w.pending.front() != name)
    fail("internal: checkpoint vector '", name, "' out of order (expected '",
         w.pending.empty() ? std::string("none") : w.pending.front(), "')");
  const hsize_t height = hsize_t(w.header.height), width = hsize_t(w.header.width);
  if (whole.size() != 3 * height * width)
    fail("internal: checkpoint vector '", name, "' has ", whole.size(), " values for ", width, "x", height);
  // Chunks of about 4 MiB: Fletcher-32 per chunk, and no chunk near HDF5's
  // 4 GiB limit at any size.
  hsize_t rows = std::clamp<hsize_t>((hsize_t(1) << 20) / width, 1, height);
  write_float_dataset(w.file, w.vectors, name.c_str(), {3, height, width}, whole.data(), {1, rows, width});
  H5Handle dataset = TESSERA_H5_OWN(w.file, H5Dopen2(w.vectors, name.c_str(), H5P_DEFAULT), H5Dclose);
  write_string_attribute(w.file, dataset, "crc32", crc32_of(whole));
  w.pending.erase(w.pending.begin());
}

std::uintmax_t CheckpointWriter::commit() {
  Impl& w = *impl_;
  if (!w.pending.empty()) fail("internal: checkpoint vector '", w.pending.front(), "' was not written");
  w.vectors.reset();
  TESSERA_H5(w.file, H5Fflush(w.handle, H5F_SCOPE_GLOBAL));
  TESSERA_H5(w.file, w.handle.close());
  std::error_code ec;
  std::uintmax_t bytes = std::filesystem::file_size(w.temporary.path(), ec);
  w.temporary.commit(w.target, "checkpoint");
  return ec ? 0 : bytes;
}

// --- reading

struct CheckpointReader::Impl {
  H5File file;
  H5Handle handle, vectors;
  CheckpointHeader header;
  explicit Impl(std::filesystem::path path) : file(std::move(path), checkpoint_kind) {}
};

CheckpointReader::CheckpointReader(std::filesystem::path path) : impl_(std::make_unique<Impl>(std::move(path))) {
  Impl& r = *impl_;
  const H5File& file = r.file;
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file.path(), ec)) fail("checkpoint '", file.path().string(), "' not found");
  if (TESSERA_H5(file, H5Fis_hdf5(file.path().c_str())) <= 0) file.invalid("it is not an HDF5 file");
  r.handle = TESSERA_H5_OWN(file, H5Fopen(file.path().c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  expect_format(file, r.handle, checkpoint_format);
  int version = read_int_attribute(file, r.handle, "format_version");
  if (version != checkpoint_version)
    file.invalid("format_version is ", version, "; this tessera reads version ", checkpoint_version);
  std::string text = read_string_attribute(file, r.handle, "header");
  if (read_string_attribute(file, r.handle, "header_sha256") != sha256_of(text))
    file.invalid("its header does not match its checksum (the file is damaged)");
  r.header = parse_header(file, text);
  if (TESSERA_H5(file, H5Lexists(r.handle, "vectors", H5P_DEFAULT)) <= 0) file.invalid("the /vectors group is missing");
  r.vectors = TESSERA_H5_OWN(file, H5Gopen2(r.handle, "vectors", H5P_DEFAULT), H5Gclose);
}

CheckpointReader::~CheckpointReader() = default;

const CheckpointHeader& CheckpointReader::header() const { return impl_->header; }
const std::filesystem::path& CheckpointReader::path() const { return impl_->file.path(); }

std::vector<float> CheckpointReader::read(const std::string& name) {
  Impl& r = *impl_;
  const H5File& file = r.file;
  bool known = name == "image" || std::find(r.header.state.optimizer_state.vectors.begin(),
                                            r.header.state.optimizer_state.vectors.end(),
                                            name) != r.header.state.optimizer_state.vectors.end();
  if (!known) file.invalid("it holds no vector '", name, "'");
  std::vector<float> values;
  std::string what = "vector '" + name + "'";
  auto dims = read_float_dataset(file, r.vectors, name.c_str(), 3, what, &values);
  if (dims != std::vector<hsize_t>{3, hsize_t(r.header.height), hsize_t(r.header.width)})
    file.invalid(what, " is not 3x", r.header.height, "x", r.header.width);
  H5Handle dataset = TESSERA_H5_OWN(file, H5Dopen2(r.vectors, name.c_str(), H5P_DEFAULT), H5Dclose);
  if (read_string_attribute(file, dataset, "crc32") != crc32_of(values))
    file.invalid(what, " does not match its checksum (the file is damaged)");
  return values;
}

void CheckpointReader::verify() {
  read("image");
  for (const auto& name : impl_->header.state.optimizer_state.vectors) read(name);
}

// --- names

std::filesystem::path checkpoint_path(const std::filesystem::path& output, int scale, int iterations_done) {
  char suffix[64];
  std::snprintf(suffix, sizeof suffix, ".ckpt-s%d-i%06d.h5", scale, iterations_done);
  return output.parent_path() / (output.stem().string() + suffix);
}

std::vector<std::filesystem::path> list_checkpoints(const std::filesystem::path& output) {
  std::filesystem::path folder = output.parent_path().empty() ? std::filesystem::path(".") : output.parent_path();
  const std::string prefix = output.stem().string() + ".ckpt-s";
  std::vector<std::pair<std::pair<int, int>, std::filesystem::path>> found;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(folder, ec)) {
    std::string name = entry.path().filename().string();
    if (!name.starts_with(prefix) || !name.ends_with(".h5")) continue;
    // "<stem>.ckpt-s<scale>-i<iterations>.h5"
    std::string_view rest(name);
    rest.remove_prefix(prefix.size());
    rest.remove_suffix(3);
    int scale = 0, iterations = 0;
    auto [after_scale, e1] = std::from_chars(rest.data(), rest.data() + rest.size(), scale);
    if (e1 != std::errc() || std::string_view(after_scale, 2) != "-i") continue;
    auto [end, e2] = std::from_chars(after_scale + 2, rest.data() + rest.size(), iterations);
    if (e2 != std::errc() || end != rest.data() + rest.size()) continue;
    found.push_back({{scale, iterations}, output.parent_path() / name});
  }
  if (ec) fail("cannot list the checkpoints in '", folder.string(), "': ", ec.message());
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<std::filesystem::path> paths;
  for (auto& [key, path] : found) paths.push_back(std::move(path));
  return paths;
}

void remove_abandoned_checkpoint_files(const std::filesystem::path& output) {
  std::filesystem::path folder = output.parent_path().empty() ? std::filesystem::path(".") : output.parent_path();
  // TemporaryFile's names: ".<target>.tmp-<pid>-<counter>".
  std::string prefix(".");
  prefix += output.stem().string();
  prefix += ".ckpt-s";
  const std::string mine = ".tmp-" + std::to_string(::getpid()) + "-";
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(folder, ec)) {
    std::string name = entry.path().filename().string();
    if (!name.starts_with(prefix) || name.find(".h5.tmp-") == std::string::npos || name.find(mine) != std::string::npos)
      continue;
    std::error_code ignored;
    std::filesystem::remove(entry.path(), ignored);
  }
}

std::string file_sha256(const std::filesystem::path& path) { return sha256_of_file(path); }

}  // namespace tessera::io
