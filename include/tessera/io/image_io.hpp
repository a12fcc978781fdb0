// Images in and out of files, through OpenImageIO.
//
// Everything here works on tessera::Image (planar float RGB). OpenImageIO stays
// behind this header: nothing that includes it sees an OIIO type.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "tessera/image.hpp"
#include "tessera/tiling.hpp"

namespace tessera::io {

// ---------------------------------------------------------------- reading
//
// read_image accepts anything OpenImageIO reads (PNG, JPEG, TIFF, EXR, BMP,
// ...). Only the first subimage and its full-resolution level are read. The
// pixel values become floats by these rules:
//
//   * unsigned integer data (8, 16, 32 bit) is scaled to [0,1] (v / max);
//     signed integer data to [-1,1] (OpenImageIO's convention);
//   * float and half data are kept as they are, even outside [0,1];
//   * no colour-space conversion: sRGB-encoded files give sRGB-encoded values,
//     linear EXRs give linear values;
//   * 1 channel (grey): replicated to R, G and B;
//   * 2 channels (grey + alpha): the grey channel is replicated, alpha dropped;
//   * 3 channels: RGB as stored;
//   * 4 channels (RGBA): the colour channels are used as stored and alpha is
//     dropped; nothing is composited over a background, so fully transparent
//     pixels keep whatever colour the file holds;
//   * more than 4 channels: the first 3 are used as RGB, the rest ignored;
//   * colour is never multiplied by alpha (files are opened with OIIO's
//     "oiio:UnassociatedAlpha" so PNG and TIFF values arrive as stored);
//   * an EXIF orientation other than "normal" is not applied (pixels as
//     stored), with a note.
//
// Every lossy rule (alpha dropped, channels ignored) adds one line to `notes`
// so that the command can warn the user; a lossless rule adds nothing.
//
// A missing file, a file OpenImageIO cannot open or decode (corrupt,
// truncated, unknown format) and an image with no pixels all throw
// tessera::Error naming the file, with OpenImageIO's own message.
struct ImageReadResult {
  Image image;
  std::vector<std::string> notes;  // e.g. "alpha channel ignored (...)"
};

ImageReadResult read_image_with_notes(const std::filesystem::path& path);
// The same, without the notes.
Image read_image(const std::filesystem::path& path);

// ---------------------------------------------------------------- resizing
//
// Filtered resampling with OpenImageIO's ImageBufAlgo::resize and its default
// filter choice: lanczos3 when either side shrinks, blackman-harris when both
// grow. The filter width is scaled with the size ratio, so downsizing averages
// over every source pixel (no aliasing). Those filters have negative lobes
// and ring slightly at hard edges; each channel of the result is therefore
// clamped to the range that channel had in the source, so a [0,1] image stays
// in [0,1] and a float image keeps its own range. The same size returns a copy
// of `image` unchanged. Sizes must be positive.
Image resize_image(const Image& image, int width_px, int height_px);

// Resizing in parts, for an image split among ranks. The source pixels that
// resizing a full_width x full_height image to width_px x height_px reads
// for the pixels `part` of the result: the filter's reach around them,
// clipped to the image.
Box resize_source_window(const Box& part, int full_width, int full_height, int width_px, int height_px);
// The pixels `part` of that resize, from `window`: the source's pixels in
// `window_box` (which holds resize_source_window(part, ...)), `channels`
// planes. Equal, value for value, to those of resize_image before its
// clamp, which the caller applies with the whole source's range.
std::vector<float> resize_part(std::span<const float> window, const Box& window_box, int channels, int full_width,
                               int full_height, int width_px, int height_px, const Box& part);

// How an image meets an output of another aspect ratio: cut to it (centred),
// extended to it with black borders (centred), or stretched.
enum class Fit { crop, pad, stretch };
Fit parse_fit(const std::string& text);  // "crop" | "pad" | "stretch", else tessera::Error
// The image at its own resolution, cropped or padded to the aspect ratio of
// width_px x height_px (the other side rounded to nearest); unchanged for
// stretch, or when the aspect already matches to the pixel.
Image fit_aspect(const Image& image, int width_px, int height_px, Fit fit);

// ---------------------------------------------------------------- writing
//
// The format follows the extension (case-insensitive):
//
//   extension        bits = 0 (default)   bits allowed
//   .png             8                    8, 16
//   .jpg .jpeg       8                    8
//   .tif .tiff       16                   8, 16, 32 (32 = float)
//   .exr             32 (float)           16 (half), 32 (float)
//
// TIFF uses zip compression, EXR the lossless piz compression (faster and
// smaller than OIIO's default zip for 8K float renders: TOOLCHAIN.md section 5).
// Integer formats clamp each value to [0,1] (NaN becomes 0) and round to
// the nearest code value; float formats store the values as they are.
//
// `metadata` (the render settings) is embedded twice:
//   * as "ImageDescription", one "key=value" line per entry under a first line
//     "tessera render settings" (newlines and backslashes in values are
//     escaped as \n and \\); every format here keeps it (PNG text chunk, TIFF
//     tag, EXR attribute, JPEG EXIF);
//   * as one "tessera:<key>" attribute per entry, where the format stores
//     arbitrary attributes (PNG text chunks, EXR header attributes).
// Keys must be non-empty and contain no '=', newline or other control
// character.
//
// The write is atomic: the pixels go to a temporary file in the target's
// folder (".<name>.tmp-<pid>-<n><extension>"), which is flushed to disk and
// then renamed over the target. On any failure the temporary file is removed
// and tessera::Error is thrown ("cannot write output '<path>': ..."); the
// target is then either absent or exactly what it was before the call.
struct WriteOptions {
  int bits = 0;           // 0: the format's default (table above); else 8, 16 or 32
  int jpeg_quality = 95;  // 1..100, JPEG only
  std::map<std::string, std::string> metadata;
};

void write_image(const std::filesystem::path& path, const Image& image,
                 const WriteOptions& options = {});

// The same file written in horizontal strips, top to bottom, so that no
// one holds the whole image in floats: each write_rows takes the next
// strip (the image's full width, any number of rows), finish() moves the
// complete file into place. The formats, conversions, metadata and atomic
// replacement are write_image's (which is one strip); a writer destroyed
// before finish() removes its temporary file and leaves the target as it
// was.
class ImageStripWriter {
 public:
  ImageStripWriter(const std::filesystem::path& path, int width, int height, const WriteOptions& options = {});
  ~ImageStripWriter();
  ImageStripWriter(const ImageStripWriter&) = delete;
  ImageStripWriter& operator=(const ImageStripWriter&) = delete;
  void write_rows(const Image& strip);
  void finish();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Everything write_image would refuse that can be known before there is an
// image (format, bit depth, a missing folder, a folder named as the output)
// and whether the folder takes a new file (one is created and removed):
// checked before a render that may take hours. Throws tessera::Error.
void check_output(const std::filesystem::path& path, const WriteOptions& options = {});

// The extensions write_image accepts, for messages and command-line help.
const std::vector<std::string>& supported_output_extensions();

// ---------------------------------------------------------------- metadata
//
// The render settings a file carries: the "tessera:<key>" attributes where
// present, plus the entries of a tessera-written ImageDescription (for formats
// that keep only the description, such as TIFF and JPEG). When both name a
// key, the attribute wins. A file without tessera settings gives an empty map.
// Throws tessera::Error like read_image when the file cannot be opened.
std::map<std::string, std::string> read_metadata(const std::filesystem::path& path);

// The raw "ImageDescription" text of a file ("" when it has none).
std::string read_description(const std::filesystem::path& path);

}  // namespace tessera::io
