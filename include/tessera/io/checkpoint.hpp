// Checkpoints: everything a render needs to continue where it stopped, on
// any number of ranks and tiles, in one HDF5 file written by rank 0.
//
// Layout, format_version 1:
//
//   /                       root group, attributes:
//     format         string  "tessera-checkpoint"
//     format_version int32   1
//     header         string  JSON: settings (what must match to continue),
//                            scale, scale_count, width, height, state
//                            (render_state_text: iterations_done,
//                            optimizer, its scalars exact as JSON doubles,
//                            vector names in order), ranks, tiles,
//                            written_at
//     header_sha256  string  SHA-256 of `header`
//   /vectors/<name>          float32 [3][height][width], planar, the
//                            backbone's input domain: "image" first, then the
//                            optimiser's vectors (Adam's moments, or L-BFGS's
//                            direction, previous gradient and history pairs);
//                            chunked with Fletcher-32, and an attribute
//     crc32          string  CRC-32 of the values (little-endian float32), hex
//
// A checkpoint is written to a hidden temporary file in the output's folder,
// flushed to disk and renamed into place, so that a crash while writing
// leaves the previous checkpoint as it was. Reading checks the format, the
// header's checksum and, for every vector read, its shape and checksum: a
// truncated or altered file is refused, never used.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "tessera/render_state.hpp"

namespace tessera::io {

inline constexpr const char* checkpoint_format = "tessera-checkpoint";
inline constexpr int checkpoint_version = 1;

struct CheckpointHeader {
  // The settings that decide the result (model, weights, images, size,
  // layers, loss weights, optimiser, seed, scales): a render continues
  // from a checkpoint only when these are equal.
  std::map<std::string, std::string> settings;
  int scale = 0;  // 0-based, of scale_count
  int scale_count = 1;
  int width = 0, height = 0;  // the image at this scale
  RenderState state;
  // For information only: a checkpoint may be continued on other counts.
  int ranks = 1;
  std::string tiles;
  std::string written_at;  // UTC, ISO 8601
};

// A render's state (iterations done, the optimiser's name, scalars and vector
// names) as JSON text, with every double exact, and back: a checkpoint's
// header holds it, and rank 0 sends it to the other ranks on resume. Throws
// tessera::Error on a non-finite scalar or malformed text.
std::string render_state_text(const RenderState& state);
RenderState parse_render_state(const std::string& text);

// One "name: saved X, now Y" line per setting that differs (or is missing
// on one side); empty when a render may continue from the checkpoint.
std::vector<std::string> settings_differences(const std::map<std::string, std::string>& saved,
                                              const std::map<std::string, std::string>& now);

class CheckpointWriter {
 public:
  // Starts the temporary file next to `path`; the vectors named "image" and
  // header.state.optimizer_state.vectors must each be written once.
  CheckpointWriter(std::filesystem::path path, CheckpointHeader header);
  ~CheckpointWriter();
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;
  // A whole planar 3 x height x width vector.
  void write(const std::string& name, std::span<const float> whole);
  // Flushes the file to disk and renames it over `path`; before this, `path`
  // is untouched. Returns the file's size in bytes.
  std::uintmax_t commit();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class CheckpointReader {
 public:
  // Opens the file and checks its format and header.
  explicit CheckpointReader(std::filesystem::path path);
  ~CheckpointReader();
  const CheckpointHeader& header() const;
  const std::filesystem::path& path() const;
  // Reads every vector and checks its checksum, so that a damaged file is
  // found before any work starts.
  void verify();
  // One vector, whole and planar, checked against its checksum.
  std::vector<float> read(const std::string& name);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The checkpoints of a render writing `output` live next to it:
// "<stem>.ckpt-s<scale>-i<iterations>.h5", scale counted from 1.
std::filesystem::path checkpoint_path(const std::filesystem::path& output, int scale, int iterations_done);
// Those files, newest (latest scale, then most iterations) first.
std::vector<std::filesystem::path> list_checkpoints(const std::filesystem::path& output);

// Removes the temporary files of checkpoints of `output` that other
// processes began and never finished (killed while writing).
void remove_abandoned_checkpoint_files(const std::filesystem::path& output);

// The SHA-256 of a file's bytes (hex): how a checkpoint records which
// images and weights a render used.
std::string file_sha256(const std::filesystem::path& path);

}  // namespace tessera::io
