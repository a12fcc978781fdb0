// Images through OpenImageIO: read any format into planar float RGB, resize,
// and write PNG / JPEG / TIFF / EXR atomically with the render settings
// embedded. The rules are documented in include/tessera/io/image_io.hpp.
#include "tessera/io/image_io.hpp"

#include <OpenImageIO/imagebuf.h>
#include <OpenImageIO/imagebufalgo.h>
#include <OpenImageIO/imageio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string_view>
#include <system_error>

#include "common/atomic_file.hpp"
#include "tessera/build_info.hpp"
#include "tessera/error.hpp"

namespace tessera::io {
namespace {

namespace fs = std::filesystem;

std::string quoted(const fs::path& path) {
  // Appended piecewise: GCC 12 warns falsely (-Wrestrict) on "'" + string.
  std::string text(1, '\'');
  text += path.string();
  text += '\'';
  return text;
}

// OpenImageIO reports failures through the object that failed or, when no
// object could be made (open, create), through the global OIIO::geterror().
std::string oiio_message(std::string message) {
  if (message.empty()) message = OIIO::geterror();
  if (message.empty()) message = "OpenImageIO gave no message";
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
  // Several errors come one per line; the user sees a one-line message.
  std::string one_line;
  for (char c : message) one_line += c == '\n' ? std::string("; ") : std::string(1, c);
  return one_line;
}

// Checked OpenImageIO call: `call` returns false on failure and `object` holds
// the message. The user reads it: what was being done (`context`) and
// OpenImageIO's reason, not the call or a source line.
#define TESSERA_OIIO_CHECK(call, object, context)                              \
  do {                                                                         \
    if (!(call)) ::tessera::fail(context, ": ", oiio_message((object).geterror())); \
  } while (false)

std::string lowercase(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return char(std::tolower(c)); });
  return text;
}

// ------------------------------------------------------------------ reading

std::unique_ptr<OIIO::ImageInput> open_input(const fs::path& path, const std::string& context) {
  std::error_code error;
  if (!fs::exists(path, error)) fail(context, ": no such file");
  if (fs::is_directory(path, error)) fail(context, ": it is a folder, not an image");
  // Without this hint OIIO premultiplies PNG and TIFF colour by alpha as it
  // reads; we want the colour channels exactly as stored.
  OIIO::ImageSpec config;
  config.attribute("oiio:UnassociatedAlpha", 1);
  auto input = OIIO::ImageInput::open(path.string(), &config);
  if (!input) fail(context, ": ", oiio_message(""));
  return input;
}

// ----------------------------------------------------------------- metadata

constexpr std::string_view description_header = "tessera render settings";
constexpr std::string_view attribute_prefix = "tessera:";

std::string escape_value(const std::string& value) {
  std::string escaped;
  for (char c : value) {
    if (c == '\\')
      escaped += "\\\\";
    else if (c == '\n')
      escaped += "\\n";
    else
      escaped += c;
  }
  return escaped;
}

std::string unescape_value(std::string_view value) {
  std::string plain;
  for (std::size_t i = 0; i < value.size(); ++i) {
    if (value[i] == '\\' && i + 1 < value.size()) {
      ++i;
      plain += value[i] == 'n' ? '\n' : value[i];
    } else {
      plain += value[i];
    }
  }
  return plain;
}

std::string settings_description(const std::map<std::string, std::string>& metadata) {
  std::string text(description_header);
  for (const auto& [key, value] : metadata) text += "\n" + key + "=" + escape_value(value);
  return text;
}

// The entries of a description written by settings_description; nothing for
// any other description.
std::map<std::string, std::string> parse_settings_description(std::string_view text) {
  std::map<std::string, std::string> settings;
  if (text.substr(0, description_header.size()) != description_header) return settings;
  text.remove_prefix(description_header.size());
  if (!text.empty() && text.front() != '\n') return settings;  // a longer first line
  while (!text.empty()) {
    text.remove_prefix(1);  // the '\n' before each entry
    std::size_t end = text.find('\n');
    std::string_view line = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view() : text.substr(end);
    std::size_t equals = line.find('=');
    if (equals == std::string_view::npos || equals == 0) continue;
    settings[std::string(line.substr(0, equals))] = unescape_value(line.substr(equals + 1));
  }
  return settings;
}

void check_metadata_key(const std::string& key, const std::string& context) {
  if (key.empty()) fail(context, ": a metadata key is empty");
  for (char c : key)
    if (c == '=' || static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
      fail(context, ": metadata key '", key,
           "' contains '=' or a control character, which the description cannot hold");
}

// ------------------------------------------------------------------ writing

enum class Format { png, jpeg, tiff, exr };

struct FormatRules {
  Format format;
  const char* name;
  int default_bits;
  std::vector<int> allowed_bits;
  bool stores_arbitrary_attributes;  // PNG text chunks, EXR header attributes
};

const FormatRules& rules_for_extension(const fs::path& path, const std::string& context) {
  static const FormatRules png{Format::png, "PNG", 8, {8, 16}, true};
  static const FormatRules jpeg{Format::jpeg, "JPEG", 8, {8}, false};
  static const FormatRules tiff{Format::tiff, "TIFF", 16, {8, 16, 32}, false};
  static const FormatRules exr{Format::exr, "EXR", 32, {16, 32}, true};
  std::string extension = lowercase(path.extension().string());
  if (extension == ".png") return png;
  if (extension == ".jpg" || extension == ".jpeg") return jpeg;
  if (extension == ".tif" || extension == ".tiff") return tiff;
  if (extension == ".exr") return exr;
  std::string accepted;
  for (const std::string& known : supported_output_extensions())
    accepted += (accepted.empty() ? "" : ", ") + known;
  fail(context, ": unsupported extension '", path.extension().string(), "'; use one of ", accepted);
}

// Clamp to [0,1] (NaN to 0) and round to the nearest of max_code + 1 codes.
template <typename Code>
std::vector<Code> quantise_interleaved(const Image& image, float max_code) {
  const std::size_t plane = image.plane_size();
  std::vector<Code> codes(plane * 3);
  for (int c = 0; c < 3; ++c) {
    const float* source = image.pixels.data() + c * plane;
    for (std::size_t i = 0; i < plane; ++i) {
      float value = source[i];
      value = value > 0.0f ? std::min(value, 1.0f) : 0.0f;  // NaN fails "> 0"
      codes[i * 3 + c] = Code(value * max_code + 0.5f);
    }
  }
  return codes;
}

std::vector<float> interleave(const Image& image) {
  const std::size_t plane = image.plane_size();
  std::vector<float> values(plane * 3);
  for (int c = 0; c < 3; ++c)
    for (std::size_t i = 0; i < plane; ++i) values[i * 3 + c] = image.pixels[c * plane + i];
  return values;
}

// A name in the target's folder, unique within this process and across
// processes, keeping the extension so that OIIO picks the same format.
fs::path temporary_path_for(const fs::path& target) {
  static std::atomic<unsigned> counter{0};
  std::string name = "." + target.filename().string() + ".tmp-" + std::to_string(::getpid()) + "-" +
                     std::to_string(counter++) + lowercase(target.extension().string());
  return target.parent_path() / name;
}

// The sRGB transfer function and its inverse, odd-symmetric so that values
// outside [0,1] (a render's overshoot) map one to one.
float srgb_to_linear(float encoded) {
  const double v = std::abs(double(encoded));
  const double linear = v <= 0.04045 ? v / 12.92 : std::pow((v + 0.055) / 1.055, 2.4);
  return float(std::copysign(linear, double(encoded)));
}

float linear_to_srgb(float linear) {
  const double v = std::abs(double(linear));
  const double encoded = v <= 0.0031308 ? v * 12.92 : 1.055 * std::pow(v, 1.0 / 2.4) - 0.055;
  return float(std::copysign(encoded, double(linear)));
}

// Whether a file's values are linear light: OpenEXR's convention unless the
// file says sRGB, and a float file of another format that says linear.
bool holds_linear_values(const OIIO::ImageInput& input, const OIIO::ImageSpec& spec) {
  const std::string space = lowercase(spec.get_string_attribute("oiio:ColorSpace"));
  if (space == "srgb") return false;
  if (std::string_view(input.format_name()) == "openexr") return true;
  const bool floating = spec.format.basetype == OIIO::TypeDesc::FLOAT || spec.format.basetype == OIIO::TypeDesc::HALF;
  return floating && (space == "linear" || space == "scene_linear" || space == "lin_rec709");
}

// The file's header: size, channels, type, metadata, colour space and
// compression; `file_type` is what its pixels are stored as.
OIIO::ImageSpec output_spec(int width, int height, const FormatRules& rules, int bits, const WriteOptions& options,
                            OIIO::TypeDesc& file_type) {
  file_type = bits == 8    ? OIIO::TypeDesc::UINT8
              : bits == 16 ? (rules.format == Format::exr ? OIIO::TypeDesc::HALF : OIIO::TypeDesc::UINT16)
                           : OIIO::TypeDesc::FLOAT;
  OIIO::ImageSpec spec(width, height, 3, file_type);
  spec.attribute("Software", std::string("tessera ") + build_info::version);
  if (!options.metadata.empty()) {
    spec.attribute("ImageDescription", settings_description(options.metadata));
    if (rules.stores_arbitrary_attributes)
      for (const auto& [key, value] : options.metadata)
        spec.attribute(std::string(attribute_prefix) + key, value);
  }
  // Images are sRGB-encoded inside tessera; OpenEXR files hold linear light
  // (what every tool that reads them assumes), the others sRGB, as tagged.
  const bool linear = rules.format == Format::exr;
  spec.attribute("oiio:ColorSpace", linear ? "Linear" : "sRGB");
  switch (rules.format) {
    case Format::jpeg:
      spec.attribute("Compression", "jpeg:" + std::to_string(options.jpeg_quality));
      break;
    case Format::tiff:
      spec.attribute("Compression", "zip");
      break;
    case Format::exr:
      spec.attribute("Compression", "piz");
      break;
    case Format::png:
      break;
  }
  return spec;
}

}  // namespace

// ------------------------------------------------------------------ reading

ImageReadResult read_image_with_notes(const fs::path& path) {
  const std::string context = "cannot read image " + quoted(path);
  auto input = open_input(path, context);
  const OIIO::ImageSpec& spec = input->spec();
  if (spec.width <= 0 || spec.height <= 0 || spec.nchannels <= 0)
    fail(context, ": the image has no pixels (", spec.width, "x", spec.height, ", ", spec.nchannels,
         " channels)");
  if (spec.depth > 1) fail(context, ": volume images (depth ", spec.depth, ") are not supported");

  ImageReadResult result;
  const int channels = spec.nchannels;
  const int colour_channels = channels <= 2 ? 1 : 3;
  if (channels == 2 || channels == 4)
    result.notes.push_back("alpha channel ignored: colour used as stored, not composited");
  if (channels > 4)
    result.notes.push_back("image has " + std::to_string(channels) +
                           " channels: the first 3 used as RGB, the other " +
                           std::to_string(channels - 3) + " ignored");
  if (int orientation = spec.get_int_attribute("Orientation", 1); orientation != 1)
    result.notes.push_back("EXIF orientation " + std::to_string(orientation) +
                           " not applied: pixels used as stored");

  // OIIO converts to float on the way: unsigned integers scale to [0,1],
  // float and half pass through unchanged.
  std::vector<float> interleaved(std::size_t(spec.width) * spec.height * colour_channels);
  TESSERA_OIIO_CHECK(
      input->read_image(0, 0, 0, colour_channels, OIIO::TypeDesc::FLOAT, interleaved.data()),
      *input, context);
  if (holds_linear_values(*input, spec))
    for (float& value : interleaved) value = linear_to_srgb(value);
  TESSERA_OIIO_CHECK(input->close(), *input, context);

  Image& image = result.image;
  image = Image(spec.width, spec.height);
  const std::size_t plane = image.plane_size();
  for (int c = 0; c < 3; ++c) {
    const int source_channel = colour_channels == 1 ? 0 : c;
    float* destination = image.pixels.data() + c * plane;
    for (std::size_t i = 0; i < plane; ++i)
      destination[i] = interleaved[i * colour_channels + source_channel];
  }
  return result;
}

Image read_image(const fs::path& path) { return read_image_with_notes(path).image; }

// ----------------------------------------------------------------- resizing

Image resize_image(const Image& image, int width_px, int height_px) {
  if (image.width <= 0 || image.height <= 0 || image.pixels.size() != 3 * image.plane_size())
    fail("cannot resize an empty or malformed image (", image.width, "x", image.height, ", ",
         image.pixels.size(), " values)");
  if (width_px <= 0 || height_px <= 0)
    fail("cannot resize to ", width_px, "x", height_px, ": sizes must be positive");
  if (width_px == image.width && height_px == image.height) return image;

  Image resized(width_px, height_px);
  const std::size_t source_plane = image.plane_size();
  const std::size_t resized_plane = resized.plane_size();
  // Each plane is a one-channel image wrapped in place (no copies); filtering
  // works channel by channel, so this equals resizing the RGB image at once.
  for (int c = 0; c < 3; ++c) {
    float* source_values = const_cast<float*>(image.pixels.data()) + c * source_plane;
    float* resized_values = resized.pixels.data() + c * resized_plane;
    OIIO::ImageBuf source(OIIO::ImageSpec(image.width, image.height, 1, OIIO::TypeDesc::FLOAT),
                          source_values);
    OIIO::ImageBuf destination(OIIO::ImageSpec(width_px, height_px, 1, OIIO::TypeDesc::FLOAT),
                               resized_values);
    const std::string context = "cannot resize " + std::to_string(image.width) + "x" +
                                std::to_string(image.height) + " to " + std::to_string(width_px) +
                                "x" + std::to_string(height_px);
    TESSERA_OIIO_CHECK(OIIO::ImageBufAlgo::resize(destination, source), destination, context);

    // Undo the filters' overshoot: no value outside the source channel's range.
    auto [low, high] = std::minmax_element(source_values, source_values + source_plane);
    const float lowest = *low, highest = *high;
    for (std::size_t i = 0; i < resized_plane; ++i)
      resized_values[i] = std::clamp(resized_values[i], lowest, highest);
  }
  return resized;
}

Box resize_source_window(const Box& part, int full_width, int full_height, int width_px, int height_px) {
  // OpenImageIO reads, for a result pixel x, the source pixels within the
  // filter's radius (in source pixels: half its width, that width scaled by
  // the ratio where the image shrinks) of floor((x + 0.5) * full / result).
  // Its default filters are at most 6 wide at a ratio of 1; 4 per side, and
  // one more for rounding, leaves room.
  auto reach = [](int result, int full) {
    const double ratio = double(result) / full;
    return int(std::ceil(4.0 / std::min(1.0, ratio))) + 1;
  };
  auto first = [](int x, int result, int full) { return int(std::floor((x + 0.5) * full / result)); };
  const int rx = reach(width_px, full_width), ry = reach(height_px, full_height);
  Box window{first(part.x0, width_px, full_width) - rx, first(part.y0, height_px, full_height) - ry,
             first(part.x1 - 1, width_px, full_width) + rx + 1, first(part.y1 - 1, height_px, full_height) + ry + 1};
  return window.intersect(Box{0, 0, full_width, full_height});
}

namespace {

// One float channel holding `data` of a width x height image.
OIIO::ImageSpec data_window(const Box& data, int width, int height) {
  OIIO::ImageSpec spec(data.width(), data.height(), 1, OIIO::TypeDesc::FLOAT);
  spec.x = data.x0;
  spec.y = data.y0;
  spec.full_x = spec.full_y = 0;
  spec.full_width = width;
  spec.full_height = height;
  return spec;
}

}  // namespace

std::vector<float> resize_part(std::span<const float> window, const Box& window_box, int channels, int full_width,
                               int full_height, int width_px, int height_px, const Box& part) {
  if (window.size() != std::size_t(channels) * window_box.area())
    fail("cannot resize a part: ", window.size(), " values for a window of ", window_box.width(), "x",
         window_box.height(), " in ", channels, " channels");
  if (!Box{0, 0, width_px, height_px}.contains(part) || part.empty())
    fail("cannot resize a part: ", part.describe(), " is not inside ", width_px, "x", height_px);
  if (!window_box.contains(resize_source_window(part, full_width, full_height, width_px, height_px)))
    fail("cannot resize ", part.describe(), ": the window ", window_box.describe(), " misses pixels it needs");
  std::vector<float> result(std::size_t(channels) * part.area());
  for (int c = 0; c < channels; ++c) {
    // The window as the data window of a full_width x full_height image, and
    // the part as that of the result: the filter's positions and weights are
    // those of the whole resize, and every tap it reads is inside the window
    // or beyond the image's edge, where the edge is clamped as before.
    OIIO::ImageBuf source(data_window(window_box, full_width, full_height),
                          const_cast<float*>(window.data()) + c * std::size_t(window_box.area()));
    OIIO::ImageBuf destination(data_window(part, width_px, height_px), result.data() + c * std::size_t(part.area()));
    TESSERA_OIIO_CHECK(OIIO::ImageBufAlgo::resize(destination, source, "", 0.0f,
                                                  OIIO::ROI(part.x0, part.x1, part.y0, part.y1)),
                       destination, "cannot resize part " + part.describe() + " of an image");
  }
  return result;
}

Fit parse_fit(const std::string& text) {
  if (text == "crop") return Fit::crop;
  if (text == "pad") return Fit::pad;
  if (text == "stretch") return Fit::stretch;
  fail("--fit must be crop, pad or stretch, got '", text, "'");
}

Image fit_aspect(const Image& image, int width_px, int height_px, Fit fit) {
  if (width_px <= 0 || height_px <= 0) fail("internal: fit_aspect to ", width_px, "x", height_px);
  if (fit == Fit::stretch) return image;
  const double aspect = double(width_px) / height_px;
  const bool wider = double(image.width) / image.height > aspect;
  // crop: the side that is too long shrinks; pad: the other one grows.
  int w = image.width, h = image.height;
  if (wider == (fit == Fit::crop)) w = std::max(1, int(std::lround(image.height * aspect)));
  else h = std::max(1, int(std::lround(image.width / aspect)));
  if (w == image.width && h == image.height) return image;
  Image result(w, h);  // black where nothing is copied
  const int copy_w = std::min(w, image.width), copy_h = std::min(h, image.height);
  const int from_x = (image.width - copy_w) / 2, from_y = (image.height - copy_h) / 2;
  const int to_x = (w - copy_w) / 2, to_y = (h - copy_h) / 2;
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < copy_h; ++y)
      for (int x = 0; x < copy_w; ++x) result.at(c, to_y + y, to_x + x) = image.at(c, from_y + y, from_x + x);
  return result;
}

// ------------------------------------------------------------------ writing

const std::vector<std::string>& supported_output_extensions() {
  static const std::vector<std::string> extensions{".png", ".jpg",  ".jpeg",
                                                   ".tif", ".tiff", ".exr"};
  return extensions;
}

namespace {

// What can be known about writing `path` without the image: the format,
// the bit depth, the folder. Returns the format's rules and the bits.
std::pair<const FormatRules*, int> check_output_settings(const fs::path& path, const WriteOptions& options,
                                                          const std::string& context) {
  const FormatRules& rules = rules_for_extension(path, context);
  const int bits = options.bits == 0 ? rules.default_bits : options.bits;
  if (std::find(rules.allowed_bits.begin(), rules.allowed_bits.end(), bits) ==
      rules.allowed_bits.end()) {
    std::string allowed;
    for (int each : rules.allowed_bits)
      allowed += (allowed.empty() ? "" : ", ") + std::to_string(each);
    fail(context, ": ", rules.name, " cannot hold ", options.bits, "-bit values; use ", allowed,
         " (or 0 for the default, ", rules.default_bits, ")");
  }
  if (rules.format == Format::jpeg && (options.jpeg_quality < 1 || options.jpeg_quality > 100))
    fail(context, ": JPEG quality ", options.jpeg_quality, " is outside 1..100");
  for (const auto& entry : options.metadata) check_metadata_key(entry.first, context);
  const fs::path folder = path.parent_path().empty() ? fs::path(".") : path.parent_path();
  std::error_code error;
  if (!fs::is_directory(folder, error))
    fail(context, ": folder ", quoted(folder), " does not exist");
  if (fs::is_directory(path, error)) fail(context, ": it is a folder");
  return {&rules, bits};
}

}  // namespace

void check_output(const fs::path& path, const WriteOptions& options) {
  const std::string context = "cannot write output " + quoted(path);
  check_output_settings(path, options, context);
  // The folder must take a new file, as the finished image will be one
  // written beside the target and renamed over it.
  const fs::path probe = temporary_path_for(path);
  std::FILE* file = std::fopen(probe.c_str(), "wbx");
  if (!file) fail(context, ": cannot create a file in its folder: ", std::strerror(errno));
  std::fclose(file);
  std::error_code ignored;
  fs::remove(probe, ignored);
}

struct ImageStripWriter::State {
  fs::path path, temporary;
  std::string context;
  const FormatRules* rules = nullptr;
  OIIO::TypeDesc file_type;
  std::unique_ptr<OIIO::ImageOutput> output;
  int width = 0, height = 0, next_row = 0;
  bool finished = false;
};

ImageStripWriter::ImageStripWriter(const fs::path& path, int width, int height, const WriteOptions& options)
    : state_(std::make_unique<State>()) {
  State& s = *state_;
  s.path = path;
  s.context = "cannot write output " + quoted(path);
  auto [rules, bits] = check_output_settings(path, options, s.context);
  s.rules = rules;
  if (width <= 0 || height <= 0) fail(s.context, ": the image is empty (", width, "x", height, ")");
  s.width = width;
  s.height = height;
  const OIIO::ImageSpec spec = output_spec(width, height, *rules, bits, options, s.file_type);
  s.temporary = temporary_path_for(path);
  s.output = OIIO::ImageOutput::create(s.temporary.string());
  if (!s.output) fail(s.context, ": ", oiio_message(""));
  try {
    TESSERA_OIIO_CHECK(s.output->open(s.temporary.string(), spec), *s.output, s.context);
  } catch (...) {
    std::error_code ignored;
    fs::remove(s.temporary, ignored);
    throw;
  }
}

ImageStripWriter::~ImageStripWriter() {
  // Abandoned (an error on the way): the target stays as it was.
  State& s = *state_;
  if (s.finished) return;
  if (s.output) (void)s.output->close();
  std::error_code ignored;
  fs::remove(s.temporary, ignored);
}

void ImageStripWriter::write_rows(const Image& strip) {
  State& s = *state_;
  if (s.finished) fail("internal: rows written to a finished image");
  if (strip.width != s.width || strip.height <= 0 || s.next_row + strip.height > s.height ||
      strip.pixels.size() != 3 * strip.plane_size())
    fail(s.context, ": rows ", s.next_row, " to ", s.next_row + strip.height, " of ", strip.width,
         " pixels do not fit a ", s.width, "x", s.height, " image");
  const int y0 = s.next_row, y1 = s.next_row + strip.height;
  // Integer files get our own clamp-and-round codes; float and half files
  // get the floats (OIIO rounds float to half correctly).
  if (s.file_type == OIIO::TypeDesc::UINT8) {
    auto codes = quantise_interleaved<std::uint8_t>(strip, 255.0f);
    TESSERA_OIIO_CHECK(s.output->write_scanlines(y0, y1, 0, OIIO::TypeDesc::UINT8, codes.data()), *s.output,
                       s.context);
  } else if (s.file_type == OIIO::TypeDesc::UINT16) {
    auto codes = quantise_interleaved<std::uint16_t>(strip, 65535.0f);
    TESSERA_OIIO_CHECK(s.output->write_scanlines(y0, y1, 0, OIIO::TypeDesc::UINT16, codes.data()), *s.output,
                       s.context);
  } else {
    auto values = interleave(strip);
    if (s.rules->format == Format::exr)
      for (float& value : values) value = srgb_to_linear(value);
    TESSERA_OIIO_CHECK(s.output->write_scanlines(y0, y1, 0, OIIO::TypeDesc::FLOAT, values.data()), *s.output,
                       s.context);
  }
  s.next_row = y1;
}

void ImageStripWriter::finish() {
  State& s = *state_;
  if (s.next_row != s.height)
    fail("internal: ", s.path.string(), " finished after ", s.next_row, " of ", s.height, " rows");
  TESSERA_OIIO_CHECK(s.output->close(), *s.output, s.context);
  s.output.reset();
  detail::sync_to_disk(s.temporary);  // before the rename: the target is then whole after a power cut
  std::error_code error;
  fs::rename(s.temporary, s.path, error);
  if (error) fail(s.context, ": cannot move the finished file into place: ", error.message());
  s.finished = true;
}

void write_image(const fs::path& path, const Image& image, const WriteOptions& options) {
  if (image.width <= 0 || image.height <= 0 || image.pixels.size() != 3 * image.plane_size())
    fail("cannot write output ", quoted(path), ": the image is empty or malformed (", image.width, "x", image.height,
         ", ", image.pixels.size(), " values)");
  ImageStripWriter writer(path, image.width, image.height, options);
  writer.write_rows(image);
  writer.finish();
}

// ----------------------------------------------------------------- metadata

std::map<std::string, std::string> read_metadata(const fs::path& path) {
  const std::string context = "cannot read metadata of " + quoted(path);
  auto input = open_input(path, context);
  const OIIO::ImageSpec& spec = input->spec();
  std::map<std::string, std::string> settings =
      parse_settings_description(spec.get_string_attribute("ImageDescription"));
  for (const OIIO::ParamValue& attribute : spec.extra_attribs) {
    const std::string& name = attribute.name().string();
    if (attribute.type() == OIIO::TypeDesc::STRING &&
        std::string_view(name).starts_with(attribute_prefix))
      settings[name.substr(attribute_prefix.size())] = attribute.get_string_indexed(0);
  }
  TESSERA_OIIO_CHECK(input->close(), *input, context);
  return settings;
}

std::string read_description(const fs::path& path) {
  const std::string context = "cannot read metadata of " + quoted(path);
  auto input = open_input(path, context);
  std::string description = input->spec().get_string_attribute("ImageDescription");
  TESSERA_OIIO_CHECK(input->close(), *input, context);
  return description;
}

}  // namespace tessera::io
