#include "render/job/tile_choice.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "render/job/memory_check.hpp"
#include "tessera/error.hpp"
#include "tessera/model.hpp"
#include "tessera/size.hpp"
#include "tessera/tiling.hpp"

namespace tessera::job {

double rank_memory_needed(const RenderRequest& o, const RenderSettings& settings, int width, int height, int ranks) {
  const Architecture& a = architecture(settings.model);
  // Each scale starts a new optimiser, so L-BFGS holds no more pairs than
  // the scale's iterations.
  const int pairs = std::min(o.lbfgs_history, std::max(1, settings.iterations));
  // L-BFGS: its pairs, the direction, the gradient where it was found, the
  // pair being measured (s, y) and the line search's starting image.
  const int optimiser_vectors = o.optimizer == "adam" ? 2 : 2 * pairs + 5;
  const int activation_bytes = o.precision == "bf16" ? 2 : 4;
  const RenderLayout layout = render_layout(settings, width, height, ranks);
  double needed = 0.0;
  for (int r = 0; r < ranks; ++r)
    needed = std::max(needed, estimate_rank_memory(a, settings.objective.content_layers,
                                                   settings.objective.style_layers, layout.grid, layout.ranks, r,
                                                   activation_bytes, optimiser_vectors)
                                  .total());
  return needed;
}

std::size_t most_tensor_elements(const std::string& backend) {
  return backend == "cuda" ? std::size_t(std::numeric_limits<std::int32_t>::max()) : 0;
}

std::size_t largest_activation(const RenderSettings& settings, int width, int height, int ranks) {
  const Architecture& a = architecture(settings.model);
  int deepest = 0;
  for (const auto& layer : settings.objective.layers()) deepest = std::max(deepest, a.index_of(layer));
  const RenderLayout layout = render_layout(settings, width, height, ranks);
  std::size_t largest = 0;
  for (const auto& tile : layout.grid.tiles)
    for (int l = 0; l <= deepest; ++l) {
      const MapSize size = feature_map_size(a, a.layers[std::size_t(l)].name, tile.grown.height(), tile.grown.width());
      largest = std::max(largest, std::size_t(size.channels) * std::size_t(size.height) * std::size_t(size.width));
    }
  return largest;
}

// The tile grid for one scale: one tile per rank unless the user chose a
// grid (kept at every scale where it fits); more per rank when a memory
// budget, or the backend's largest tensor, asks for it.
void choose_tiles(const RenderRequest& o, RenderSettings& settings, int width, int height, int ranks,
                  std::vector<std::string>& notes, std::size_t most_elements, double device_budget) {
  const Architecture& a = architecture(settings.model);
  std::vector<std::string> used = settings.objective.layers();
  const auto [most_rows, most_columns] = TileGrid::most_tiles(a, used, width, height);
  auto enough_for_ranks = [&](int rows, int columns) {
    if (rows * columns < ranks)
      fail("the image at ", width, "x", height, " holds at most ", most_rows, "x", most_columns, " tiles, fewer than ",
           ranks, " ranks: use fewer ranks", o.scales != "1" && o.scales != "auto" ? " or fewer --scales" : "");
  };
  if (o.tiles != "auto") {
    if (!o.memory_per_rank.empty()) fail("--memory-per-rank chooses the tiles: use it with --tiles auto");
    parse_tile_grid(o.tiles, settings.tile_rows, settings.tile_columns);
    if (settings.tile_rows > most_rows || settings.tile_columns > most_columns) {
      int rows = std::min(settings.tile_rows, most_rows), columns = std::min(settings.tile_columns, most_columns);
      notes.push_back(fmt::format("{}x{}: {}x{} tiles (--tiles {} does not fit at this size)", width, height, rows,
                                  columns, o.tiles));
      settings.tile_rows = rows;
      settings.tile_columns = columns;
    }
    enough_for_ranks(settings.tile_rows, settings.tile_columns);
    if (most_elements > 0) {
      const std::size_t largest = largest_activation(settings, width, height, ranks);
      if (largest > most_elements) {
        // The smallest grid, as --tiles auto would grow it, whose largest
        // activation fits.
        RenderSettings trial = settings;
        RenderRequest automatic = o;
        automatic.tiles = "auto";
        automatic.memory_per_rank.clear();
        std::vector<std::string> unused;
        std::string fits = "more tiles";
        try {
          choose_tiles(automatic, trial, width, height, ranks, unused, most_elements);
          fits = fmt::format("--tiles {}x{}", trial.tile_rows, trial.tile_columns);
        } catch (const Error&) {
        }
        fail("at ", width, "x", height, " on ", settings.tile_rows, "x", settings.tile_columns,
             " tiles a tile's activations reach ", largest, " values, over the ", most_elements,
             " one GPU tensor may hold (cuDNN's 32-bit sizes): use ", fits, " (or --tiles auto)");
      }
    }
    return;
  }
  // The user's budget, else the GPU's free memory where the backend has one.
  const bool users_budget = !o.memory_per_rank.empty();
  const double budget = users_budget ? parse_bytes(o.memory_per_rank) : device_budget;
  const std::string budget_name =
      users_budget ? "--memory-per-rank " + o.memory_per_rank
                   : fmt::format("the GPU's free memory ({:.1f} GiB)", device_budget / (1u << 30));
  double needed = 0.0;
  for (int per_rank = 1; per_rank <= 4096; per_rank *= 2) {
    // rows x columns = ranks x per_rank, as square as the image allows.
    const int tiles = ranks * per_rank;
    int rows = 1;
    for (int r = 1; r * r <= tiles; ++r)
      if (tiles % r == 0) rows = r;
    int columns = tiles / rows;
    if (height > width) std::swap(rows, columns);
    if (rows > most_rows || columns > most_columns) {
      if (per_rank == 1) enough_for_ranks(0, 0);
      break;
    }
    settings.tile_rows = rows;
    settings.tile_columns = columns;
    if (most_elements > 0 && largest_activation(settings, width, height, ranks) > most_elements) continue;
    if (budget == 0.0) return;
    needed = rank_memory_needed(o, settings, width, height, ranks);
    if (needed <= budget) {
      // One tile per rank needs no note when the GPU's memory holds it.
      if (users_budget || per_rank > 1)
        notes.push_back(fmt::format("{}x{}: {}x{} tiles for {}: about {:.1f} GiB per rank (estimate)", width, height,
                                    rows, columns, budget_name, needed / (1u << 30)));
      return;
    }
  }
  if (budget == 0.0)
    fail("at ", width, "x", height, " no tile grid the image holds keeps a tile's activations under the ",
         most_elements, " values one GPU tensor may hold: use more ranks");
  fail("the render does not fit in ", budget_name, " with as many tiles as the image holds (",
       settings.tile_rows, "x", settings.tile_columns, " need about ", fmt::format("{:.1f}", needed / (1u << 30)),
       " GiB per rank): give more memory, more ranks, --precision bf16, or --optimizer adam");
}

double device_memory_budget(Backend& backend, Communicator& communicator) {
  if (backend.host_memory()) return 0.0;
  double free_bytes = double(backend.free_device_bytes());
  if (communicator.size() > 1) free_bytes = -communicator.max(-free_bytes);
  // Outside the estimate: cuDNN's workspace (up to 1 GiB for an algorithm)
  // and what the libraries allocate for themselves.
  // At least a byte: 0 would mean "no budget" to choose_tiles, and a GPU
  // too full for any tile must be an error, not a render without a limit.
  return std::max(1.0, 0.9 * free_bytes - double(1u << 30));
}

// Before the first scale: the tiles and memory of every scale (shown with
// --dry-run), and one warning where the largest does not fit in the memory
// this machine has free. A --memory-per-rank budget is the user's own word
// on memory and is not second-guessed.
void check_memory(const RenderRequest& o, const RenderSettings& settings, const std::vector<Scale>& scales, int ranks,
                  bool show) {
  double largest = 0.0;
  for (std::size_t s = 0; s < scales.size(); ++s) {
    RenderSettings scale_settings = settings;
    scale_settings.iterations = scales[s].iterations;
    std::vector<std::string> unused;
    choose_tiles(o, scale_settings, scales[s].width, scales[s].height, ranks, unused, most_tensor_elements(o.backend));
    const double needed = rank_memory_needed(o, scale_settings, scales[s].width, scales[s].height, ranks);
    largest = std::max(largest, needed);
    if (show)
      spdlog::info("scale {} of {}: {}x{}, {} iterations, {}x{} tiles on {} rank(s), about {:.2f} GiB per rank "
                   "(estimate)",
                   s + 1, scales.size(), scales[s].width, scales[s].height, scales[s].iterations,
                   scale_settings.tile_rows, scale_settings.tile_columns, ranks, needed / (1u << 30));
  }
  if (!o.memory_per_rank.empty()) return;
  auto available = available_memory_bytes();
  if (!available) return;
  if (auto warning = memory_shortfall(largest, ranks_on_this_node(), *available); !warning.empty())
    spdlog::warn("{}", warning);
}

// A halo below the rule's is an approximation: its error measured on a crop
// of the content image (the gradient at the start, 2x2 tiles with that halo
// against one exact tile), in one process on rank 0, before the render.
std::string measure_halo_error(Backend& backend, const RenderSettings& settings, const WeightSet& weights,
                               const RenderInputs& inputs) {
  const Architecture& a = architecture(settings.model);
  std::vector<std::string> used = settings.objective.layers();
  const int width = inputs.content.width, height = inputs.content.height;
  int stride = total_stride_for(a, used), exact = halo_width_for(a, used);
  int side = 2 * (exact + 2 * stride);  // two tiles, each larger than the exact halo
  int crop_w = std::min(width, side), crop_h = std::min(height, side);
  Image crop(crop_w, crop_h);
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < crop_h; ++y)
      for (int x = 0; x < crop_w; ++x) crop.at(c, y, x) = inputs.content.at(c, y, x);
  auto gradient_on_crop = [&](int rows, int columns, int halo) {
    RenderSettings probe = settings;
    probe.tile_rows = rows;
    probe.tile_columns = columns;
    probe.halo_px = halo;
    probe.init = settings.init == InitKind::random ? InitKind::random : InitKind::content;
    RenderInputs crop_inputs;
    crop_inputs.weights = &weights;
    crop_inputs.content = crop;
    crop_inputs.styles = inputs.styles;
    crop_inputs.blend_weights = inputs.blend_weights;
    SingleProcess alone;
    Renderer probe_renderer(backend, alone, probe, std::move(crop_inputs));
    return probe_renderer.gradient();
  };
  try {
    auto reference = gradient_on_crop(1, 1, -1);
    auto approximate = gradient_on_crop(2, 2, settings.halo_px);
    double largest = 0.0, worst = 0.0;
    for (std::size_t i = 0; i < reference.size(); ++i) {
      largest = std::max(largest, double(std::abs(reference[i])));
      worst = std::max(worst, double(std::abs(reference[i] - approximate[i])));
    }
    return fmt::format("halo {} px (exact: {} px): on a {}x{} crop in 2x2 tiles the gradient is off by up to {:.2g} % "
                       "of its largest value",
                       settings.halo_px, exact, crop_w, crop_h, largest > 0 ? 100.0 * worst / largest : 0.0);
  } catch (const Error& e) {
    return fmt::format("halo {} px: its error could not be measured ({})", settings.halo_px, e.what());
  }
}

}  // namespace tessera::job
