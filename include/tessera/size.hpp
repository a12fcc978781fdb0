// Output sizes as users write them.
#pragma once

#include <string>
#include <string_view>

namespace tessera {

// Either a long side (the other follows the content image's aspect ratio) or an
// exact width x height.
struct SizeRequest {
  int long_side_px = 0;  // > 0 when only the long side is given
  int width_px = 0;      // > 0 (with height_px) when both are given
  int height_px = 0;

  bool exact() const { return width_px > 0; }
  // The pixel size for a source of the given aspect ratio; the short side is
  // rounded to nearest and is at least 1.
  void resolve(int source_width_px, int source_height_px, int& width_px_out, int& height_px_out) const;
  std::string describe() const;
};

// Accepts "512" (long side), "1920x1080", presets "hd" (1920x1080), "4k"
// (3840x2160), "8k" (7680x4320), and print sizes "24x36in@300dpi" (also "cm").
// Throws tessera::Error with the accepted forms on anything else, including
// zero, negative and absurd sizes (above 65536 px a side).
SizeRequest parse_size(std::string_view text);

}  // namespace tessera
