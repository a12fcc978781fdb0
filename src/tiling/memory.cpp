#include <cctype>
#include <cmath>

#include "tessera/error.hpp"
#include "tessera/tiling.hpp"

namespace tessera {

MemoryEstimate estimate_rank_memory(const Architecture& arch, const std::vector<std::string>& content_layers,
                                    const std::vector<std::string>& style_layers, const TileGrid& grid,
                                    const RankMap& ranks, int rank, int bytes_per_activation,
                                    int optimiser_vectors) {
  std::vector<std::string> layers = content_layers;
  layers.insert(layers.end(), style_layers.begin(), style_layers.end());
  int deepest = 0;
  for (const auto& layer : layers) deepest = std::max(deepest, arch.index_of(layer));

  MemoryEstimate m;
  // Activations kept per input pixel: every stage's output (conv+ReLU or
  // pool) up to the deepest layer, at its stride; plus the two gradient
  // buffers of the largest stage (the first, at full resolution).
  double per_pixel = 0.0, largest = 0.0;
  int stride = 1;
  for (int i = 0; i <= deepest; ++i) {
    const LayerSpec& layer = arch.layers[i];
    if (layer.kind == LayerKind::relu) continue;
    stride *= layer.stride;
    if (layer.kind == LayerKind::conv) m.weights += 2.0 * 4.0 * double(layer.out_channels) * layer.in_channels *
                                                    layer.kernel * layer.kernel;
    double values = double(layer.out_channels) / (double(stride) * stride);
    per_pixel += values;
    largest = std::max(largest, values);
  }
  per_pixel += 2.0 * largest;
  // The tapped layers' gradients.
  for (const auto& layer : layers) {
    const LayerSpec& spec = arch.layers[arch.index_of(layer)];
    int field_stride = receptive_field(arch, layer).stride_px;
    per_pixel += double(spec.out_channels) / (double(field_stride) * field_stride);
  }
  const double image_pixels = double(grid.width) * grid.height;
  // The images on the host: content and style as read, in the input domain,
  // the start, and the copies made on the way (measured: about eight).
  m.images = 8.0 * 3.0 * image_pixels * 4.0;
  m.weights += 160.0 * 1024 * 1024;  // the libraries' own resident memory (OpenImageIO's dependencies, oneDNN)

  double owned = 0.0, largest_grown = 0.0, content_per_pixel = 0.0;
  for (const auto& layer : content_layers) {
    auto field = receptive_field(arch, layer);
    const LayerSpec& spec = arch.layers[arch.index_of(layer)];
    content_per_pixel += double(spec.out_channels) / (double(field.stride_px) * field.stride_px);
  }
  for (const auto& tile : grid.tiles) {
    if (ranks.rank_of(tile.index) != rank) continue;
    owned += double(tile.owned.area());
    largest_grown = std::max(largest_grown, double(tile.grown.area()));
    m.content_targets += content_per_pixel * double(tile.grown.area()) * bytes_per_activation;
  }
  // x and the gradient, plus the optimiser's own vectors, over owned pixels
  // (and the grown image and its gradient for one tile).
  m.optimiser = (2.0 + optimiser_vectors) * 3.0 * owned * 4.0 + 2.0 * 3.0 * largest_grown * 4.0;
  m.activations = per_pixel * largest_grown * bytes_per_activation;
  // What the parts above miss (planned primitives' scratch, per-shape
  // buffers, allocator slack): measured at 10-20 % with several tiles.
  m.activations *= 1.2;
  m.content_targets *= 1.2;
  return m;
}

double parse_bytes(const std::string& text) {
  std::size_t used = 0;
  double value = 0.0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    fail("bad size '", text, "': expected a number and a unit, such as 8GiB or 512MiB");
  }
  std::string unit = text.substr(used);
  for (char& c : unit) c = char(std::tolower(static_cast<unsigned char>(c)));
  double scale = 0.0;
  if (unit == "b" || unit.empty()) scale = 1.0;
  else if (unit == "k" || unit == "kib" || unit == "kb") scale = 1024.0;
  else if (unit == "m" || unit == "mib" || unit == "mb") scale = 1024.0 * 1024.0;
  else if (unit == "g" || unit == "gib" || unit == "gb") scale = 1024.0 * 1024.0 * 1024.0;
  else if (unit == "t" || unit == "tib" || unit == "tb") scale = 1024.0 * 1024.0 * 1024.0 * 1024.0;
  if (scale == 0.0 || !(value > 0.0) || !std::isfinite(value))
    fail("bad size '", text, "': expected a number and a unit, such as 8GiB or 512MiB");
  return value * scale;
}

}  // namespace tessera
