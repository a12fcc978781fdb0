// Output sizes as users write them: "512", "1920x1080", "hd", "4k", "8k",
// "24x36in@300dpi", "60x90cm@300dpi". Standard library only (tessera_core).
#include "tessera/size.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <optional>

#include "tessera/error.hpp"

namespace tessera {
namespace {

// The largest side we accept: beyond it a float RGB image is over 48 GiB and
// surely a typo.
constexpr int max_side_px = 65536;
constexpr double centimetres_per_inch = 2.54;

constexpr const char* accepted_forms =
    "expected a long side in pixels (\"512\"), width x height in pixels (\"1920x1080\"), "
    "a preset (hd = 1920x1080, 4k = 3840x2160, 8k = 7680x4320) or a print size "
    "(\"24x36in@300dpi\", \"60x90cm@300dpi\"); each side 1 to 65536 px";

[[noreturn]] void reject(std::string_view text, std::string_view reason) {
  if (reason.empty()) fail("invalid size '", text, "': ", accepted_forms);
  fail("invalid size '", text, "': ", reason, "; ", accepted_forms);
}

// A whole positive number of pixels, all of `digits` consumed; nullopt when
// `digits` is not a plain decimal integer.
std::optional<long long> parse_integer(std::string_view digits) {
  if (digits.empty() ||
      !std::all_of(digits.begin(), digits.end(), [](unsigned char c) { return std::isdigit(c); }))
    return std::nullopt;
  long long value = 0;
  auto [end, status] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (status == std::errc::result_out_of_range) return max_side_px + 1LL;  // "too large"
  if (status != std::errc() || end != digits.data() + digits.size()) return std::nullopt;
  return value;
}

// A plain decimal such as "24" or "8.5" (no sign, no exponent).
std::optional<double> parse_decimal(std::string_view digits) {
  if (digits.empty() || !std::all_of(digits.begin(), digits.end(),
                                     [](unsigned char c) { return std::isdigit(c) || c == '.'; }))
    return std::nullopt;
  double value = 0;
  auto [end, status] = std::from_chars(digits.data(), digits.data() + digits.size(), value,
                                       std::chars_format::fixed);
  if (status != std::errc() || end != digits.data() + digits.size()) return std::nullopt;
  return value;
}

int checked_side(std::string_view text, long long side_px, std::string_view what) {
  // Too large to parse arrives as max_side_px + 1: say the limit, not that number.
  if (side_px > max_side_px)
    reject(text, std::string(what) + " is larger than " + std::to_string(max_side_px) + " px");
  if (side_px < 1) reject(text, std::string(what) + " of " + std::to_string(side_px) + " px is out of range");
  return int(side_px);
}

// "<w>x<h><unit>@<dpi>dpi" with unit "in" or "cm"; `compact` is lower case
// with no spaces. nullopt when it does not have that shape.
std::optional<SizeRequest> parse_print_size(std::string_view text, std::string_view compact) {
  std::size_t at = compact.find('@');
  if (at == std::string_view::npos) return std::nullopt;
  std::string_view paper = compact.substr(0, at);
  std::string_view resolution = compact.substr(at + 1);

  double unit_per_inch = 0;
  if (paper.ends_with("in"))
    unit_per_inch = 1.0;
  else if (paper.ends_with("cm"))
    unit_per_inch = centimetres_per_inch;
  else
    reject(text, "a print size needs a unit, \"in\" or \"cm\", before '@'");
  paper.remove_suffix(2);

  if (!resolution.ends_with("dpi")) reject(text, "a print size ends in \"@<dots per inch>dpi\"");
  resolution.remove_suffix(3);

  std::size_t cross = paper.find('x');
  if (cross == std::string_view::npos) reject(text, "a print size is <width>x<height><unit>");
  std::optional<double> width = parse_decimal(paper.substr(0, cross));
  std::optional<double> height = parse_decimal(paper.substr(cross + 1));
  std::optional<double> dots_per_inch = parse_decimal(resolution);
  if (!width || !height || !dots_per_inch) reject(text, "");
  if (*width <= 0 || *height <= 0 || *dots_per_inch <= 0)
    reject(text, "print sizes and resolution must be positive");

  // Pixels = inches x dots per inch, rounded to nearest.
  auto pixels = [&](double length) {
    double exact = length / unit_per_inch * *dots_per_inch;
    return exact > 2.0 * max_side_px ? 2LL * max_side_px : std::llround(exact);
  };
  SizeRequest request;
  request.width_px = checked_side(text, pixels(*width), "the print width");
  request.height_px = checked_side(text, pixels(*height), "the print height");
  return request;
}

}  // namespace

SizeRequest parse_size(std::string_view text) {
  std::string compact;
  for (unsigned char c : text)
    if (!std::isspace(c)) compact += char(std::tolower(c));
  if (compact.empty()) reject(text, "it is empty");

  SizeRequest request;
  if (compact == "hd") {
    request.width_px = 1920, request.height_px = 1080;
    return request;
  }
  if (compact == "4k") {
    request.width_px = 3840, request.height_px = 2160;
    return request;
  }
  if (compact == "8k") {
    request.width_px = 7680, request.height_px = 4320;
    return request;
  }
  if (std::optional<SizeRequest> print = parse_print_size(text, compact)) return *print;

  if (std::optional<long long> long_side = parse_integer(compact)) {
    request.long_side_px = checked_side(text, *long_side, "a long side");
    return request;
  }
  std::size_t cross = compact.find('x');
  if (cross != std::string::npos) {
    std::optional<long long> width = parse_integer(std::string_view(compact).substr(0, cross));
    std::optional<long long> height = parse_integer(std::string_view(compact).substr(cross + 1));
    if (width && height) {
      request.width_px = checked_side(text, *width, "a width");
      request.height_px = checked_side(text, *height, "a height");
      return request;
    }
  }
  if (compact.find('-') != std::string::npos) reject(text, "sizes must be positive");
  reject(text, "");
}

void SizeRequest::resolve(int source_width_px, int source_height_px, int& width_px_out,
                          int& height_px_out) const {
  if (exact()) {
    width_px_out = width_px;
    height_px_out = height_px;
    return;
  }
  if (source_width_px <= 0 || source_height_px <= 0)
    fail("cannot size an output from a ", source_width_px, "x", source_height_px, " source");
  if (long_side_px <= 0) {  // no request: keep the source's size
    width_px_out = source_width_px;
    height_px_out = source_height_px;
    return;
  }
  // Short side = long side x short / long, rounded half up in integers so the
  // result never depends on floating-point rounding.
  auto scaled = [&](std::int64_t numerator, std::int64_t denominator) {
    std::int64_t rounded =
        (2 * std::int64_t(long_side_px) * numerator + denominator) / (2 * denominator);
    return int(std::max<std::int64_t>(1, rounded));
  };
  if (source_width_px >= source_height_px) {
    width_px_out = long_side_px;
    height_px_out = scaled(source_height_px, source_width_px);
  } else {
    height_px_out = long_side_px;
    width_px_out = scaled(source_width_px, source_height_px);
  }
}

std::string SizeRequest::describe() const {
  if (exact()) return std::to_string(width_px) + "x" + std::to_string(height_px) + " px";
  if (long_side_px > 0) return "long side " + std::to_string(long_side_px) + " px";
  return "the source image's size";
}

}  // namespace tessera
