// `tessera render`: neural-style's options in kebab-case, a TOML config that
// says the same things, progress, a JSON log, and an output written
// atomically, also when the run is interrupted.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <numeric>
#include <optional>
#include <sstream>

#include "cli/agreement.hpp"
#include "cli/commands.hpp"
#include "cli/config_file.hpp"
#include "cli/imported_weights.hpp"
#include "cli/memory_check.hpp"
#include "cli/progress.hpp"
#include "cli/signals.hpp"
#include "cli/threads.hpp"
#include "tessera/backend.hpp"
#include "tessera/build_info.hpp"
#include "tessera/error.hpp"
#include "tessera/io/checkpoint.hpp"
#include "tessera/io/image_io.hpp"
#include "tessera/io/weights_file.hpp"
#include "tessera/model.hpp"
#include "tessera/render.hpp"
#include "tessera/scales.hpp"
#include "tessera/size.hpp"
#include "tessera/tiling.hpp"

namespace tessera::cli {
namespace {

struct RenderOptions {
  std::string content;
  std::vector<std::string> styles;
  std::vector<float> style_blend_weights;
  std::string output = "out.png";
  std::string size = "512";
  float style_scale = 1.0f;
  std::string model;
  std::string weights;
  std::string proto_file;
  std::vector<std::string> content_layers;
  std::vector<std::string> style_layers;
  float content_weight = 5.0f;
  float style_weight = 100.0f;
  float tv_weight = 1e-3f;
  std::string init = "random";
  std::string optimizer = "lbfgs";
  float learning_rate = 10.0f;
  int lbfgs_history = 100;
  std::string line_search = "strong-wolfe";
  bool normalize_gradients = false;
  int iterations = 1000;
  std::uint64_t seed = 0;
  bool original_colors = false;
  std::string original_colors_value;  // as given: "" (the flag alone), 1, 0, true, false
  std::string init_image;
  int gpu = -1;
  std::string fit = "crop";
  std::string pooling = "max";
  int print_every = 50;
  int save_every = 0;
  int checkpoint_every = 0;
  std::string resume;
  std::string scales = "auto";
  std::vector<int> scale_iterations;
  std::string backend = "auto";
  std::string precision = "f32";
  std::string tiles = "auto";
  std::string halo = "exact";
  std::string memory_per_rank;
  int threads = 0;
  std::string config;
  std::string log_json;
  int bits = 0;
  bool quiet = false;
  bool keep_checkpoints = false;
  bool dry_run = false;
};

std::vector<std::string> split_list(const std::vector<std::string>& items) {
  std::vector<std::string> out;
  for (const auto& item : items) {
    std::stringstream stream(item);
    std::string part;
    while (std::getline(stream, part, ','))
      if (!part.empty()) out.push_back(part);
  }
  return out;
}

std::filesystem::path resolve_weights(const RenderOptions& o, const std::string& model) {
  auto find_named = [](const std::string& name) -> std::optional<std::filesystem::path> {
    for (const auto& folder : weights_search_folders())
      if (std::filesystem::exists(folder / (name + ".h5"))) return folder / (name + ".h5");
    return std::nullopt;
  };
  auto searched = [](const std::string& name) {
    std::vector<std::string> places;
    for (const auto& folder : weights_search_folders()) places.push_back((folder / (name + ".h5")).string());
    return fmt::format("{}", fmt::join(places, " nor "));
  };
  if (!o.weights.empty()) {
    std::filesystem::path path(o.weights);
    if (std::filesystem::is_directory(path)) fail("--weights '", o.weights, "' is a folder, not a weights file");
    if (std::filesystem::exists(path)) return path;
    // A bare name ("vgg19") means a file in the weights folders.
    if (!path.has_extension() && !path.has_parent_path()) {
      if (auto found = find_named(o.weights)) return *found;
      fail("weights '", o.weights, "' not found (nor ", searched(o.weights),
           "; import them with 'tessera models import' or tools/fetch-models.sh)");
    }
    fail("weights file '", o.weights, "' not found");
  }
  if (auto found = find_named(model)) return *found;
  fail("no weights given and none found at ", searched(model),
       ": pass --weights FILE (an .h5, or a .caffemodel or .pth, imported on first use), or import them with "
       "tools/fetch-models.sh");
}

// From about this size a scale's set-up takes long enough to be worth a line.
constexpr double kLargeSetUpPixels = 1e6;

// OUTPUT_NNNN.ext, or OUTPUT_sS_NNNN.ext when the render has several scales.
std::string intermediate_name(const std::string& output, int scale, int scale_count, int iteration) {
  std::filesystem::path path(output);
  std::string tag = scale_count > 1 ? fmt::format("_s{}_{:04}", scale + 1, iteration) : fmt::format("_{:04}", iteration);
  return (path.parent_path() / (path.stem().string() + tag + path.extension().string())).string();
}

// The most memory one rank needs (estimate, bytes) for the tile grid in
// `settings` at this size.
double rank_memory_needed(const RenderOptions& o, const RenderSettings& settings, int width, int height, int ranks) {
  const Architecture& a = architecture(settings.model);
  std::vector<std::string> used = settings.objective.layers();
  // Each scale starts a new optimiser, so L-BFGS holds no more pairs than
  // the scale's iterations.
  const int pairs = std::min(o.lbfgs_history, std::max(1, settings.iterations));
  const int optimiser_vectors = o.optimizer == "adam" ? 2 : 2 * pairs + 2;
  const int activation_bytes = o.precision == "bf16" ? 2 : 4;
  TileGrid grid =
      TileGrid::for_layers(a, used, width, height, settings.tile_rows, settings.tile_columns, settings.halo_px);
  auto owners = RankMap::contiguous(int(grid.tiles.size()), ranks);
  double needed = 0.0;
  for (int r = 0; r < ranks; ++r)
    needed = std::max(needed, estimate_rank_memory(a, settings.objective.content_layers,
                                                   settings.objective.style_layers, grid, owners, r,
                                                   activation_bytes, optimiser_vectors)
                                  .total());
  return needed;
}

// The tile grid for one scale: one tile per rank unless the user chose a
// grid (kept at every scale where it fits); more per rank when a memory
// budget asks for it.
void choose_tiles(const RenderOptions& o, RenderSettings& settings, int width, int height, int ranks,
                  std::vector<std::string>& notes) {
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
    return;
  }
  const double budget = o.memory_per_rank.empty() ? 0.0 : parse_bytes(o.memory_per_rank);
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
    if (budget == 0.0) return;
    needed = rank_memory_needed(o, settings, width, height, ranks);
    if (needed <= budget) {
      notes.push_back(fmt::format("{}x{}: {}x{} tiles for --memory-per-rank {}: about {:.1f} GiB per rank (estimate)",
                                  width, height, rows, columns, o.memory_per_rank, needed / (1u << 30)));
      return;
    }
  }
  fail("the render does not fit in --memory-per-rank ", o.memory_per_rank, " with as many tiles as the image holds (",
       settings.tile_rows, "x", settings.tile_columns, " need about ", fmt::format("{:.1f}", needed / (1u << 30)),
       " GiB per rank): give more memory, more ranks, --precision bf16, or --optimizer adam");
}

// Before the first scale: the tiles and memory of every scale (shown with
// --dry-run), and one warning where the largest does not fit in the memory
// this machine has free. A --memory-per-rank budget is the user's own word
// on memory and is not second-guessed.
void check_memory(const RenderOptions& o, const RenderSettings& settings, const std::vector<Scale>& scales, int ranks,
                  bool show) {
  double largest = 0.0;
  for (std::size_t s = 0; s < scales.size(); ++s) {
    RenderSettings scale_settings = settings;
    scale_settings.iterations = scales[s].iterations;
    std::vector<std::string> unused;
    choose_tiles(o, scale_settings, scales[s].width, scales[s].height, ranks, unused);
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

// Where a render continues from: a checkpoint chosen, checked and agreed
// on by every rank.
struct ResumePoint {
  std::unique_ptr<io::CheckpointReader> reader;  // rank 0 only
  int scale = 0;
  RenderState state;
  bool resumed = false;
};

// Opens and checks a checkpoint for this render (rank 0): the whole file is
// read and checksummed, and its settings must be this render's.
std::unique_ptr<io::CheckpointReader> open_checkpoint(const std::filesystem::path& path,
                                                      const std::map<std::string, std::string>& settings) {
  auto reader = std::make_unique<io::CheckpointReader>(path);
  auto differences = io::settings_differences(reader->header().settings, settings);
  if (!differences.empty())
    fail("checkpoint '", path.string(), "' is from a different render and cannot continue this one (",
         fmt::format("{}", fmt::join(differences, "; ")),
         "): run with the settings it was written with, or without --resume");
  reader->verify();
  return reader;
}

ResumePoint find_resume_point(const RenderOptions& o, const std::map<std::string, std::string>& settings,
                              std::vector<std::string>& notes) {
  const auto started = std::chrono::steady_clock::now();
  ResumePoint point;
  if (o.resume.empty()) {
    if (auto stale = io::list_checkpoints(o.output); !stale.empty())
      notes.push_back(fmt::format("{} checkpoint(s) of an earlier render of {} (such as {}) will be replaced; "
                                  "--resume auto continues from them instead",
                                  stale.size(), o.output, stale.front().filename().string()));
    return point;
  }
  if (o.resume == "auto") {
    auto candidates = io::list_checkpoints(o.output);
    for (const auto& path : candidates) {
      std::unique_ptr<io::CheckpointReader> reader;
      try {
        reader = std::make_unique<io::CheckpointReader>(path);
      } catch (const Error& e) {
        spdlog::warn("skipping checkpoint {}: {}", path.string(), e.what());
        continue;
      }
      auto differences = io::settings_differences(reader->header().settings, settings);
      if (!differences.empty())
        fail("checkpoint '", path.string(), "' is from a different render (",
             fmt::format("{}", fmt::join(differences, "; ")),
             "): --resume auto will not continue it; move it away or render to another --output");
      try {
        reader->verify();
      } catch (const Error& e) {
        spdlog::warn("skipping checkpoint {}: {}", path.string(), e.what());
        continue;
      }
      point.reader = std::move(reader);
      break;
    }
    if (!point.reader) {
      notes.push_back(candidates.empty()
                          ? fmt::format("--resume auto: no checkpoint of {} yet; starting from the beginning", o.output)
                          : fmt::format("--resume auto: no usable checkpoint of {}; starting from the beginning",
                                        o.output));
      return point;
    }
  } else {
    try {
      point.reader = open_checkpoint(o.resume, settings);
    } catch (const Error& e) {
      fail("cannot resume: ", e.what());
    }
  }
  const auto& header = point.reader->header();
  point.resumed = true;
  point.scale = header.scale;
  point.state = header.state;
  notes.push_back(fmt::format("resuming from {}: scale {} of {}, {} iterations done (written {} by {} rank(s), {} tiles; "
                              "checked in {:.1f} s)",
                              point.reader->path().string(), header.scale + 1, header.scale_count,
                              header.state.iterations_done, header.written_at, header.ranks, header.tiles,
                              std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count()));
  return point;
}

// A resumed render logs again the iterations that ran after its checkpoint
// (a job killed between two checkpoints): the log keeps only the lines up to
// iteration `iteration` of scale `scale` (1-based, as logged), so that each
// iteration appears once. A line cut short by the kill goes too.
void keep_log_until(const std::string& path, int scale, int iteration) {
  std::ifstream in(path);
  if (!in) return;  // no log yet: the resumed render starts one
  std::string kept, line;
  while (std::getline(in, line)) {
    const auto record = nlohmann::json::parse(line, nullptr, false);
    if (record.is_discarded() || !record.contains("iteration")) continue;
    const int line_scale = record.value("scale", 1), line_iteration = record["iteration"].get<int>();
    if (line_scale < scale || (line_scale == scale && line_iteration <= iteration)) kept += line + "\n";
  }
  in.close();
  const std::string temporary = path + ".resume-tmp";
  {
    std::ofstream out(temporary, std::ios::trunc);
    out << kept;
    if (!out.flush()) fail("cannot rewrite the JSON log '", path, "' for the resumed render");
  }
  std::error_code error;
  std::filesystem::rename(temporary, path, error);
  if (error) fail("cannot rewrite the JSON log '", path, "': ", error.message());
}

// Removes the checkpoints of `output` that `keep` does not want, and any
// left half-written; returns how many checkpoints went.
int remove_checkpoints(const std::string& output, const std::function<bool(const std::filesystem::path&)>& keep) {
  int removed = 0;
  for (const auto& old : io::list_checkpoints(output)) {
    std::error_code error;
    if (!keep(old) && std::filesystem::remove(old, error)) ++removed;
  }
  io::remove_abandoned_checkpoint_files(output);
  return removed;
}

// The settings that make the image what it is, as text: both the resume
// identity (a checkpoint continues only a render that agrees on them) and
// the output image's metadata start from this one list.
std::map<std::string, std::string> settings_record(const RenderOptions& o, const RenderSettings& settings,
                                                   const std::string& model) {
  return {
      {"model", model},
      {"content_layers", fmt::format("{}", fmt::join(settings.objective.content_layers, ","))},
      {"style_layers", fmt::format("{}", fmt::join(settings.objective.style_layers, ","))},
      {"content_weight", fmt::format("{}", settings.objective.content_weight)},
      {"style_weight", fmt::format("{}", settings.objective.style_weight)},
      {"tv_weight", fmt::format("{}", settings.objective.tv_weight)},
      {"style_scale", fmt::format("{}", o.style_scale)},
      {"pooling", o.pooling},
      {"seed", std::to_string(o.seed)},
      {"optimizer", o.optimizer},
      {"line_search", o.optimizer == "lbfgs" ? o.line_search : "-"},
      {"normalize_gradients", o.normalize_gradients ? "yes" : "no"},
      {"precision", o.precision},
  };
}

// What a render is, worked out from the options and the weights file alone,
// before any image is read: the same on every rank.
struct RenderPlan {
  std::vector<std::string> styles;
  SizeRequest size;
  std::filesystem::path weights_path;
  WeightSet weights;
  std::string model;
  std::string deepest;  // the deepest layer the weights reach
  RenderSettings settings;
  InitKind first_init = InitKind::random;
  std::vector<std::string> notes;  // said once the render starts
};

RenderPlan plan_render(CLI::App& command, RenderOptions& o) {
  RenderPlan plan;
  // A config may hold Adam's rate for a render the command line switches
  // to L-BFGS; only a rate typed with L-BFGS is a mistake.
  const bool typed_learning_rate = command.get_option("--learning-rate")->count() > 0;
  if (!o.config.empty()) {
    if (!std::filesystem::is_regular_file(o.config))
      fail("--config: '", o.config, std::filesystem::exists(o.config) ? "' is not a file" : "' not found");
    apply_config_file(command, o.config);
  }
  auto given = [&](const char* name) { return command.get_option(name)->count() > 0; };

  // --- neural-style's forms of some options
  if (given("--original-colors")) {
    const auto& v = o.original_colors_value;
    if (v.empty() || v == "1" || v == "true") o.original_colors = true;
    else if (v == "0" || v == "false") o.original_colors = false;
    else fail("--original-colors takes 1 or 0 (or nothing), got '", v, "'");
  }
  if (o.init == "image") {
    if (o.init_image.empty()) fail("--init image needs --init-image FILE");
    o.init = o.init_image;
  } else if (!o.init_image.empty()) {
    if (given("--init")) fail("--init-image goes with --init image, not --init ", o.init);
    o.init = o.init_image;
  }
  if (given("--gpu")) {
    if (given("--backend")) fail("--gpu and --backend both choose the device: give one");
    if (o.gpu > 0)
      fail("--gpu ", o.gpu, ": each rank uses one GPU, chosen by its local rank or CUDA_VISIBLE_DEVICES; "
           "use --gpu 0 (or --backend cuda) and set CUDA_VISIBLE_DEVICES=", o.gpu);
    o.backend = o.gpu < 0 ? "cpu" : "cuda";
  }

  // --- check everything cheap before any heavy work
  io::parse_fit(o.fit);
  if (o.content.empty()) fail("--content is required (the photo to restyle)");
  plan.styles = split_list(o.styles);
  const auto& styles = plan.styles;
  if (styles.empty()) fail("--style is required (one or more images, comma separated)");
  if (!o.style_blend_weights.empty() && o.style_blend_weights.size() != styles.size())
    fail("--style-blend-weights has ", o.style_blend_weights.size(), " values for ", styles.size(), " style images");
  plan.size = parse_size(o.size);
  if (!(o.style_scale > 0.0f)) fail("--style-scale must be positive, got ", o.style_scale);
  if (o.iterations < 1) fail("--iterations must be at least 1, got ", o.iterations);
  if (o.checkpoint_every < 0) fail("--checkpoint-every must be 0 (only on signals) or more, got ", o.checkpoint_every);
  for (auto [flag, value] : {std::pair{"--content-weight", o.content_weight}, {"--style-weight", o.style_weight},
                             {"--tv-weight", o.tv_weight}})
    if (!std::isfinite(value) || value < 0.0f) fail(flag, " must be a number, 0 or more, got ", value);
  if (!std::isfinite(o.learning_rate) || !(o.learning_rate > 0.0f))
    fail("--learning-rate must be a positive number, got ", o.learning_rate);
  if (o.optimizer == "lbfgs" && typed_learning_rate)
    fail("--learning-rate is Adam's (--optimizer adam): L-BFGS sizes its own steps");
  if (o.lbfgs_history < 1) fail("--lbfgs-history must be at least 1, got ", o.lbfgs_history);
  if (o.threads < 0) fail("--threads must be 0 (all the CPUs this process may use) or more, got ", o.threads);
  if (o.save_every < 0) fail("--save-every must be 0 (never) or more, got ", o.save_every);
  if (o.print_every < 1) fail("--print-every must be at least 1, got ", o.print_every);
  if (o.bits != 0 && o.bits != 8 && o.bits != 16 && o.bits != 32)
    fail("--bits must be 8, 16 or 32 (0: the format's default), got ", o.bits);
  parse_precision(o.precision);
  if (o.pooling != "max" && o.pooling != "avg") fail("--pooling must be max or avg, got '", o.pooling, "'");
  if (o.optimizer != "lbfgs" && o.optimizer != "adam")
    fail("--optimizer must be lbfgs or adam, got '", o.optimizer, "'");
  {
    // Before any work: a render can take hours, and only then write. Rank 0
    // writes the image, so it alone tries the folder.
    io::WriteOptions output_options;
    output_options.bits = o.bits;
    if (process_communicator().rank() == 0) io::check_output(o.output, output_options);
  }
  if (!o.resume.empty() && o.resume != "auto" && !std::filesystem::exists(o.resume))
    fail("--resume: checkpoint '", o.resume, "' not found (or use --resume auto)");

  // --- weights and layers
  if (!o.proto_file.empty()) {
    // neural-style's -proto_file: tessera reads the layers from the weights;
    // the prototxt names the backbone they must be.
    const std::string described = architecture_from_prototxt(o.proto_file);
    if (!o.model.empty() && o.model != described)
      fail("--model ", o.model, " but --proto-file ", o.proto_file, " describes ", described);
    o.model = described;
  }
  plan.weights_path = resolve_weights(o, o.model.empty() ? "vgg19" : o.model);
  if (needs_import(plan.weights_path)) {
    try {
      plan.weights_path = cached_import(plan.weights_path, o.model, plan.notes);
    } catch (const Error& e) {
      if (o.proto_file.empty()) throw;
      fail(e.what(), " (--proto-file ", o.proto_file, " describes ", o.model, ")");
    }
  }
  plan.weights = io::read_weights(plan.weights_path);
  const auto& weights_path = plan.weights_path;
  const auto& weights = plan.weights;
  plan.model = o.model.empty() ? weights.architecture : o.model;
  const auto& model = plan.model;
  if (model != weights.architecture)
    fail("--model ", model, " does not match the weights in ", weights_path.string(), ", which are for ",
         weights.architecture);
  const Architecture& arch = architecture(model);
  plan.deepest = deepest_available_layer(arch, weights);
  const auto& deepest = plan.deepest;
  auto available = [&](const std::string& layer) {
    int index = arch.index_of(layer);
    return index >= 0 && index <= arch.index_of(deepest);
  };

  // Said once the inputs are known to be good, so that an error is one line.
  auto& notes = plan.notes;
  auto& settings = plan.settings;
  settings.model = model;
  auto content_layers = split_list(o.content_layers);
  auto style_layers = split_list(o.style_layers);
  if (content_layers.empty()) {
    content_layers = {arch.default_content_layer};
    if (!available(arch.default_content_layer)) {
      content_layers = {deepest};
      notes.push_back(fmt::format("the weights end at {}: content layer {} (the default, {}, is deeper)", deepest,
                                  deepest, arch.default_content_layer));
    }
  }
  if (style_layers.empty()) {
    for (const auto& layer : arch.default_style_layers)
      if (available(layer)) style_layers.push_back(layer);
    if (style_layers.size() != arch.default_style_layers.size())
      notes.push_back(fmt::format("the weights end at {}: style layers {}", deepest, fmt::join(style_layers, ",")));
  }
  check_loss_layers(arch, weights, content_layers);
  check_loss_layers(arch, weights, style_layers);
  settings.objective.content_layers = content_layers;
  settings.objective.style_layers = style_layers;
  settings.objective.content_weight = o.content_weight;
  settings.objective.style_weight = o.style_weight;
  settings.objective.tv_weight = o.tv_weight;
  // Weights whose activations are scaled unlike the original VGG's (the
  // normalised VGG-19) carry their own defaults for the loss weights.
  for (auto [flag, key, value] : {std::tuple{"--content-weight", "content_weight", &settings.objective.content_weight},
                                  std::tuple{"--style-weight", "style_weight", &settings.objective.style_weight},
                                  std::tuple{"--tv-weight", "tv_weight", &settings.objective.tv_weight}}) {
    auto recommended = weights.provenance.find(std::string("recommended_") + key);
    if (given(flag) || recommended == weights.provenance.end()) continue;
    try {
      *value = std::stof(recommended->second);
    } catch (const std::exception&) {
      fail("weights file ", weights_path.string(), " recommends ", key, " '", recommended->second,
           "', which is not a number");
    }
    notes.push_back(fmt::format("{} {} (recommended for these weights; {} overrides)", key, recommended->second, flag));
  }
  settings.objective.pooling = o.pooling == "max" ? Pooling::max : Pooling::avg;
  settings.optimizer = o.optimizer;
  settings.learning_rate = o.learning_rate;
  settings.lbfgs_history = o.lbfgs_history;
  if (o.line_search != "strong-wolfe" && o.line_search != "none")
    fail("--line-search must be strong-wolfe or none, got '", o.line_search, "'");
  if (o.optimizer != "lbfgs" && given("--line-search"))
    fail("--line-search is L-BFGS's: Adam takes fixed steps (--learning-rate)");
  settings.objective.normalize_gradients = o.normalize_gradients;
  if (o.normalize_gradients && o.optimizer == "lbfgs" && !given("--line-search")) {
    // A line search tests the loss against the gradient's slope, which
    // normalised gradients no longer are.
    o.line_search = "none";
    notes.push_back("normalised gradients: L-BFGS takes neural-style's fixed steps (--line-search none)");
  }
  settings.line_search = o.line_search == "none" ? LineSearch::none : LineSearch::strong_wolfe;
  settings.seed = o.seed;
  settings.original_colors = o.original_colors;
  if (o.halo != "exact") {
    try {
      settings.halo_px = std::stoi(o.halo);
    } catch (const std::exception&) {
      fail("--halo must be 'exact' or a width in pixels, got '", o.halo, "'");
    }
    if (settings.halo_px < 0) fail("--halo must not be negative");
  }
  plan.first_init = o.init == "random" ? InitKind::random : o.init == "content" ? InitKind::content
                                                                                          : InitKind::image;
  return plan;
}

int run_render(CLI::App& command, RenderOptions& o) {
  // Every rank checks the options alike; a mistake is said once, by the
  // lowest rank that found it, not once per rank.
  Communicator& communicator = process_communicator();
  RenderPlan plan = agreed(communicator, [&] { return plan_render(command, o); });
  const auto& styles = plan.styles;
  const SizeRequest& size = plan.size;
  const auto& weights_path = plan.weights_path;
  WeightSet& weights = plan.weights;
  const std::string& model = plan.model;
  const std::string& deepest = plan.deepest;
  auto& notes = plan.notes;
  const RenderSettings& settings = plan.settings;
  const InitKind first_init = plan.first_init;

  // --- images: rank 0 reads them at their own size once, and resizes them
  // for each scale; the other ranks receive their tiles' parts.
  const bool root = communicator.rank() == 0;
  auto read_noting = [&notes](const std::string& path) {
    io::ImageReadResult read = io::read_image_with_notes(path);
    for (const auto& note : read.notes) notes.push_back(path + ": " + note);
    return std::move(read.image);
  };
  Image content_source, init_source;
  std::vector<Image> style_sources;
  std::vector<float> dimensions = {0.0f, 0.0f};
  if (root) {
    content_source = read_noting(o.content);
    int width = 0, height = 0;
    size.resolve(content_source.width, content_source.height, width, height);
    dimensions = {float(width), float(height)};
    for (const auto& path : styles) style_sources.push_back(read_noting(path));
    if (first_init == InitKind::image) init_source = io::read_image(o.init);
    // An output of its own aspect ratio (WxH, presets, print sizes): the
    // content (and an initial image) cropped or padded to it, once.
    const io::Fit fit = io::parse_fit(o.fit);
    if (size.exact() && fit != io::Fit::stretch) {
      Image fitted = io::fit_aspect(content_source, width, height, fit);
      if (fitted.width != content_source.width || fitted.height != content_source.height)
        notes.push_back(fmt::format("the content ({}x{}) {} to {}x{}, the output's {}:{} shape (--fit {}; "
                                    "--fit stretch keeps it whole)",
                                    content_source.width, content_source.height,
                                    fit == io::Fit::crop ? "cropped" : "padded with black", fitted.width,
                                    fitted.height, width / std::gcd(width, height), height / std::gcd(width, height),
                                    o.fit));
      content_source = std::move(fitted);
      if (first_init == InitKind::image) init_source = io::fit_aspect(init_source, width, height, fit);
    } else if (size.exact() &&
               std::abs(double(content_source.width) / content_source.height - double(width) / height) > 0.01) {
      notes.push_back(fmt::format("the content ({}x{}) stretched to {}x{} (--fit stretch)", content_source.width,
                                  content_source.height, width, height));
    }
  }
  communicator.broadcast(dimensions);
  const int width = int(dimensions[0]), height = int(dimensions[1]);
  std::vector<Scale> scales = plan_scales(o.scales, width, height, o.iterations, o.scale_iterations);
  const int scale_count = int(scales.size());

  // What decides the result: a checkpoint continues only a render that
  // agrees on all of it (not on ranks, tiles, threads or backend).
  std::map<std::string, std::string> identity;
  ResumePoint point;
  if (root) {
    auto weights_identity = weights.provenance.count("source_sha256") ? weights.provenance.at("source_sha256")
                                                                       : io::file_sha256(weights_path);
    std::vector<std::string> scale_sizes, style_identities;
    for (const auto& scale : scales) scale_sizes.push_back(fmt::format("{}x{}", scale.width, scale.height));
    for (const auto& path : styles) style_identities.push_back(io::file_sha256(path));
    identity = settings_record(o, settings, model);
    identity.insert({
        {"weights", fmt::format("{} up to {} (sha256 {})", weights.architecture, deepest, weights_identity)},
        {"content", io::file_sha256(o.content)},
        {"style", fmt::format("{}", fmt::join(style_identities, ","))},
        {"style_blend_weights", fmt::format("{}", fmt::join(o.style_blend_weights, ","))},
        {"size", fmt::format("{}x{}", width, height)},
        {"scales", fmt::format("{}", fmt::join(scale_sizes, ","))},
        {"init", first_init == InitKind::image ? "image " + io::file_sha256(o.init) : o.init},
        {"learning_rate", o.optimizer == "adam" ? fmt::format("{}", o.learning_rate) : "1"},
        {"lbfgs_history", o.optimizer == "lbfgs" ? std::to_string(o.lbfgs_history) : "-"},
        {"fit", plan.size.exact() ? o.fit : "-"},
    });
    point = find_resume_point(o, identity, notes);
  }
  {
    // The other ranks need the scale and the optimiser's scalars; the
    // vectors come through Renderer::restore.
    std::string text = root && point.resumed ? std::to_string(point.scale) + "\n" + io::render_state_text(point.state)
                                             : std::string();
    communicator.broadcast(text);
    if (!root && !text.empty()) {
      point.resumed = true;
      point.scale = std::stoi(text.substr(0, text.find('\n')));
      point.state = io::parse_render_state(text.substr(text.find('\n') + 1));
    }
  }
  if (o.dry_run) {
    spdlog::info("weights {} ({} up to {})", weights_path.string(), model, deepest);
    for (const auto& note : notes) spdlog::info("{}", note);
  }
  check_memory(o, settings, scales, communicator.size(), o.dry_run);
  if (o.dry_run) {
    spdlog::info("dry run: the inputs are good; nothing rendered");
    return 0;
  }

  auto backend = make_backend(o.backend);
  const ThreadChoice threads = choose_threads(o.threads);
  backend->set_threads(threads.threads);
  const char* wait_policy = std::getenv("OMP_WAIT_POLICY");
  spdlog::debug("{} threads: {}; OpenMP waits {}", threads.threads, threads.why,
                wait_policy ? wait_policy : "as libgomp does by default");
  backend->set_precision(parse_precision(o.precision));

  std::ofstream log;
  if (!o.log_json.empty() && root) {
    if (point.resumed) keep_log_until(o.log_json, point.scale + 1, point.state.iterations_done);
    log.open(o.log_json, point.resumed ? std::ios::app : std::ios::trunc);
    if (!log) fail("cannot write the JSON log '", o.log_json, "'");
  }

  // Once the first scale starts iterating, a SIGINT or SIGTERM stops the
  // render after the iteration the ranks agree on, with a checkpoint and
  // the image so far. Before that there is nothing to save, and one ends
  // the process at once, even in the middle of setting up a large render.
  std::optional<SignalListener> signals;

  // Checkpoints this run has written or resumed from, oldest first: after a
  // new one is in place only it and the one before it are kept.
  std::vector<std::filesystem::path> kept;
  if (point.reader) kept.push_back(point.reader->path());

  std::vector<float> carried;  // rank 0: the previous scale's result, upsampled, in the input domain
  int done = 0, first_scale = point.scale;
  bool interrupted = false;
  std::string stopped_early;
  for (int s = first_scale; s < scale_count; ++s) {
    const Scale& scale = scales[s];
    const auto scale_started = std::chrono::steady_clock::now();
    const bool resuming_here = point.resumed && s == point.scale;
    RenderSettings scale_settings = settings;
    scale_settings.iterations = scale.iterations;
    RenderInputs inputs;
    inputs.weights = &weights;
    inputs.blend_weights = o.style_blend_weights;
    std::vector<std::string> scale_notes;
    choose_tiles(o, scale_settings, scale.width, scale.height, communicator.size(), scale_notes);
    if (resuming_here) {
      scale_settings.init = InitKind::content;  // replaced by the checkpoint's image
    } else if (s > first_scale || point.resumed) {
      scale_settings.init = InitKind::given;
    } else {
      scale_settings.init = first_init;
    }
    if (root) {
      inputs.content = content_source.width == scale.width && content_source.height == scale.height
                           ? content_source
                           : io::resize_image(content_source, scale.width, scale.height);
      // neural-style's style scale: the style image's long side is
      // style-scale times this scale's long side.
      int style_long_side = std::max(1, int(std::lround(o.style_scale * std::max(scale.width, scale.height))));
      for (const auto& style : style_sources) {
        SizeRequest style_size;
        style_size.long_side_px = style_long_side;
        int sw = 0, sh = 0;
        style_size.resolve(style.width, style.height, sw, sh);
        inputs.styles.push_back(sw == style.width && sh == style.height ? style : io::resize_image(style, sw, sh));
      }
      if (scale_settings.init == InitKind::image)
        inputs.init_image = init_source.width == scale.width && init_source.height == scale.height
                                ? init_source
                                : io::resize_image(init_source, scale.width, scale.height);
      if (scale_settings.init == InitKind::given) inputs.start = std::move(carried);
    } else {
      // Only the sizes travel now; the renderer scatters to each rank the
      // parts of the images its tiles need.
      inputs.content.width = scale.width;
      inputs.content.height = scale.height;
      inputs.styles.resize(styles.size());
    }
    if (communicator.size() > 1) {
      std::vector<float> style_dimensions;
      for (const auto& style : inputs.styles) style_dimensions.insert(style_dimensions.end(), {float(style.width), float(style.height)});
      communicator.broadcast(style_dimensions);
      for (std::size_t k = 0; k < inputs.styles.size(); ++k) {
        inputs.styles[k].width = int(style_dimensions[2 * k]);
        inputs.styles[k].height = int(style_dimensions[2 * k + 1]);
      }
      if (!root && scale_settings.init == InitKind::image) {
        inputs.init_image = Image();
        inputs.init_image->width = scale.width;
        inputs.init_image->height = scale.height;
      }
    }

    // What this scale is, said before its set-up (targets, networks,
    // buffers), which takes tens of seconds at poster sizes.
    if (s == first_scale)
      for (const auto& note : notes) spdlog::info("{}", note);
    for (const auto& note : scale_notes) spdlog::info("{}", note);
    std::string layout =
        communicator.size() > 1 || scale_settings.tile_rows * scale_settings.tile_columns > 1
            ? fmt::format(", {} rank(s), {}x{} tiles, halo {} px", communicator.size(), scale_settings.tile_rows,
                          scale_settings.tile_columns,
                          render_halo_for(architecture(model), scale_settings.objective.layers(),
                                          scale_settings.halo_px))
            : std::string();
    if (scale_count > 1)
      spdlog::info("scale {} of {}: {}x{}, {} iterations of {}{}", s + 1, scale_count, scale.width, scale.height,
                   scale.iterations, o.optimizer, layout);
    else
      spdlog::info("rendering {}x{} with {} ({}), {} iterations of {}, on {}{}", width, height, model,
                   weights_path.filename().string(), scale.iterations, o.optimizer, backend->describe().front(),
                   layout);
    if (s == first_scale && scale_count > 1)
      spdlog::info("with {} ({}) on {}", model, weights_path.filename().string(), backend->describe().front());
    if (double(scale.width) * scale.height >= kLargeSetUpPixels)
      spdlog::info("setting up: style targets, content features, networks and buffers{}",
                   signals ? "" : " (Ctrl-C stops at once: nothing is rendered yet)");

    std::string halo_error;
    if (settings.halo_px >= 0 && root) halo_error = measure_halo_error(*backend, scale_settings, weights, inputs);
    Renderer renderer(*backend, communicator, scale_settings, std::move(inputs));
    if (!halo_error.empty()) spdlog::info("{}", halo_error);
    if (s == scale_count - 1) weights = WeightSet{};  // the backend holds its own copy now
    const int resumed_at = resuming_here ? point.state.iterations_done : 0;
    if (resuming_here) {
      renderer.restore(point.state, [&](const std::string& name) { return point.reader->read(name); });
      point.reader.reset();
    }

    std::map<std::string, std::string> metadata = settings_record(o, settings, model);
    metadata.insert({
        {"software", std::string("tessera ") + build_info::version},
        {"content", o.content},
        {"style", fmt::format("{}", fmt::join(styles, ","))},
        {"size", fmt::format("{}x{}", scale.width, scale.height)},
        {"weights", weights_path.filename().string()},
        {"init", o.init},
        {"original_colors", o.original_colors ? "true" : "false"},
        {"tiles", fmt::format("{}x{}", scale_settings.tile_rows, scale_settings.tile_columns)},
        {"halo", o.halo},
        {"scale", fmt::format("{} of {}", s + 1, scale_count)},
    });
    auto write = [&](const std::string& path, int iterations_done) {
      io::WriteOptions write_options;
      write_options.bits = o.bits;
      write_options.metadata = metadata;
      write_options.metadata["iterations"] = std::to_string(iterations_done);
      Image image = renderer.image();  // every rank takes part; rank 0 gets the image
      if (root) io::write_image(path, image, write_options);
    };

    // A collective call: every rank hands over its part; rank 0 writes. A
    // failure to write is a warning (the render goes on, the previous
    // checkpoint stays); the seconds and bytes go to the log.
    Progress progress(stderr, o.print_every, o.quiet || !root);
    auto checkpoint = [&](double& seconds, std::uintmax_t& bytes) {
      auto start = std::chrono::steady_clock::now();
      auto path = io::checkpoint_path(o.output, s + 1, renderer.iterations_done());
      std::unique_ptr<io::CheckpointWriter> writer;
      std::string problem;
      if (root) {
        io::CheckpointHeader header;
        header.settings = identity;
        header.scale = s;
        header.scale_count = scale_count;
        header.width = scale.width;
        header.height = scale.height;
        header.state = renderer.state();
        header.ranks = communicator.size();
        header.tiles = fmt::format("{}x{}", scale_settings.tile_rows, scale_settings.tile_columns);
        try {
          writer = std::make_unique<io::CheckpointWriter>(path, header);
        } catch (const Error& e) {
          problem = e.what();
        }
      }
      renderer.save([&](const std::string& name, std::span<const float> whole) {
        if (!problem.empty()) return;
        try {
          writer->write(name, whole);
        } catch (const Error& e) {
          problem = e.what();
        }
      });
      if (!root) return;
      if (problem.empty()) {
        try {
          bytes = writer->commit();
        } catch (const Error& e) {
          problem = e.what();
        }
      }
      writer.reset();
      seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (!problem.empty()) {
        progress.finish();
        spdlog::warn("checkpoint not written ({}); the previous one is kept", problem);
        return;
      }
      if (kept.empty() || kept.back() != path) kept.push_back(path);
      // Keep this checkpoint and the one before it; earlier ones (also those
      // of an earlier render of this output) go.
      remove_checkpoints(o.output, [&](const std::filesystem::path& old) {
        return old == kept.back() || (kept.size() > 1 && old == kept[kept.size() - 2]);
      });
      spdlog::debug("checkpoint {} ({:.1f} MB, {:.2f} s)", path.string(), bytes / 1e6, seconds);
    };

    double loop_seconds = 0.0;
    // Set only from a value every rank agreed on: what each rank does after
    // the loop (write the image and end, or go on to the next scale) holds
    // collectives that must match. The raw signal flag can change between
    // the last agreement and the end of the loop on one rank alone.
    bool stop_agreed = false;
    // A scale whose loss has barely moved after its first iterations is not
    // styling the image: said once, with what to try, and marked in the log.
    constexpr int kStallIterations = 20;
    constexpr double kStallFraction = 0.9;
    double first_loss = 0.0;
    bool stalled_now = false;
    if (!signals) signals.emplace();
    int scale_done = renderer.run([&](const IterationReport& r) {
      progress.update(r);
      if (r.iteration == 1) first_loss = r.losses.total();
      stalled_now = r.iteration == kStallIterations && first_loss > 0.0 &&
                    r.losses.total() > kStallFraction * first_loss;
      if (stalled_now) {
        progress.finish();
        spdlog::warn("the loss fell only from {:.4g} to {:.4g} in {} iterations: the render has stalled. {}",
                     first_loss, r.losses.total(), kStallIterations,
                     o.optimizer == "adam" ? "Try a larger --learning-rate, or L-BFGS"
                     : o.line_search == "none"
                         ? "neural-style's fixed L-BFGS steps stall on large images: use --line-search strong-wolfe"
                         : "Check the loss weights: --style-weight and --content-weight");
      }
      loop_seconds = r.seconds;
      auto io_start = std::chrono::steady_clock::now();
      if (o.save_every > 0 && r.iteration % o.save_every == 0 && r.iteration < r.iterations) {
        progress.finish();
        write(intermediate_name(o.output, s, scale_count, r.iteration), r.iteration);
      }
      double io_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - io_start).count();
      // Every rank takes the same decision, or the collectives would hang:
      // 2 stops (and checkpoints), 1 checkpoints and goes on.
      double request = signals->stop_signal() != 0 ? 2.0 : signals->take_checkpoint_request() ? 1.0 : 0.0;
      if (communicator.size() > 1) request = communicator.max(request);
      const bool periodic =
          o.checkpoint_every > 0 && r.iteration % o.checkpoint_every == 0 && r.iteration < r.iterations;
      double checkpoint_seconds = 0.0;
      std::uintmax_t checkpoint_bytes = 0;
      if (request > 0.0 || periodic) {
        // Periodic checkpoints are quiet (the progress line stays as it
        // is); one asked for by SIGUSR1 says where it went.
        checkpoint(checkpoint_seconds, checkpoint_bytes);
        if (request == 1.0 && checkpoint_bytes > 0 && !kept.empty()) {
          progress.finish();
          spdlog::info("checkpoint after iteration {} (SIGUSR1): {}", r.iteration, kept.back().string());
        }
      }
      if (log.is_open()) {
        nlohmann::json line = {{"iteration", r.iteration},
                               {"loss", r.losses.total()},
                               {"content_loss", r.losses.content},
                               {"style_loss", r.losses.style},
                               {"tv_loss", r.losses.tv},
                               {"style_loss_per_layer", r.losses.style_per_layer},
                               {"evaluations", r.evaluations},
                               {"seconds", r.seconds},
                               {"seconds_this_iteration", r.seconds_this_iteration},
                               {"compute_seconds", r.times.compute},
                               {"halo_seconds", r.times.halo},
                               {"allreduce_seconds", r.times.allreduce},
                               {"io_seconds", io_seconds},
                               {"ranks", communicator.size()},
                               {"scale", s + 1},
                               {"scales", scale_count},
                               {"width", scale.width},
                               {"height", scale.height}};
        if (!r.search_losses.empty()) line["search_losses"] = r.search_losses;
        if (stalled_now) line["stalled"] = true;
        if (checkpoint_bytes > 0) {
          line["checkpoint_seconds"] = checkpoint_seconds;
          line["checkpoint_bytes"] = checkpoint_bytes;
        }
        log << line.dump() << '\n';
        log.flush();
      }
      stop_agreed = request >= 2.0;
      return !stop_agreed;
    });
    progress.finish();
    done = scale_done;
    if (scale_count > 1) {
      double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - scale_started).count();
      spdlog::info("scale {} of {}: {} iterations in {} ({} of it before the first iteration: targets, set-up){}",
                   s + 1, scale_count, done - resumed_at, format_duration(seconds),
                   format_duration(seconds - loop_seconds),
                   resumed_at > 0 ? fmt::format("; resumed after iteration {}", resumed_at) : "");
    }

    if (stop_agreed) {
      interrupted = true;
      write(o.output, done);
      int signal = signals->stop_signal();
      spdlog::warn("interrupted ({}) after {} of {} iterations{}; the image so far{} is in {}, and a checkpoint "
                   "next to it (--resume auto continues)",
                   signal == SIGINT ? "SIGINT" : signal == SIGTERM ? "SIGTERM" : "another rank", done,
                   scale.iterations, scale_count > 1 ? fmt::format(" of scale {} of {}", s + 1, scale_count) : "",
                   scale_count > 1 ? fmt::format(" ({}x{})", scale.width, scale.height) : "", o.output);
      break;
    }
    if (!renderer.stop_reason().empty()) {
      stopped_early = renderer.stop_reason();
      // Reaching a minimum early is news, not trouble; anything else is.
      const bool converged = renderer.converged();
      spdlog::log(converged ? spdlog::level::info : spdlog::level::warn, "{} after {} of {} iterations{}: {}",
                  converged ? "finished" : "stopped", done, scale.iterations,
                  scale_count > 1 ? fmt::format(" of scale {}", s + 1) : "", stopped_early);
    }
    if (s + 1 < scale_count) {
      // The next scale starts from this one's result, upsampled in the
      // backbone's input domain (no round trip through RGB).
      if (o.checkpoint_every > 0) {
        double seconds = 0.0;
        std::uintmax_t bytes = 0;
        checkpoint(seconds, bytes);
      }
      std::vector<float> planar = renderer.input_image();
      if (root) {
        Image current(scale.width, scale.height);
        current.pixels = std::move(planar);
        carried = io::resize_image(current, scales[s + 1].width, scales[s + 1].height).pixels;
      }
      continue;
    }
    write(o.output, done);
  }
  if (interrupted) return kExitInterrupted;
  spdlog::info("wrote {}", o.output);
  // A finished render needs its checkpoints no more, and a later render of
  // this output with other settings would find them in its way.
  if (root && !o.keep_checkpoints) {
    const int removed = remove_checkpoints(o.output, [](const std::filesystem::path&) { return false; });
    if (removed > 0) spdlog::info("removed {} checkpoint{} (--keep-checkpoints keeps them)", removed, removed > 1 ? "s" : "");
  }
  return 0;
}

}  // namespace

Command add_render_command(CLI::App& app) {
  auto* command = app.add_subcommand("render", "Render an image in the style of others (Gatys et al.)");
  auto o = std::make_shared<RenderOptions>();
  command->add_option("--content,--content-image", o->content, "Content image (any format OpenImageIO reads)");
  command->add_option("--style,--style-image", o->styles, "Style image(s), comma separated")->delimiter(',');
  command->add_option("--style-blend-weights", o->style_blend_weights,
                      "Weights of the style images' Gram targets (normalised to sum to 1)")
      ->delimiter(',');
  command->add_option("-o,--output,--output-image", o->output, "Output image: .png .jpg .tif .exr")->capture_default_str();
  command->add_option("--size,--image-size", o->size,
                      "Output size: long side (512), WxH (1920x1080), hd, 4k, 8k, or print (24x36in@300dpi)")
      ->capture_default_str();
  command->add_option("--fit", o->fit,
                      "An output whose shape differs from the content's (WxH, hd, print sizes): crop (centred), pad "
                      "(black borders) or stretch; a long side alone keeps the content's shape")
      ->capture_default_str();
  command->add_option("--style-scale", o->style_scale, "Style image long side relative to the output's")
      ->capture_default_str();
  command->add_option("--model", o->model, "Backbone: vgg19, vgg16, nin (default: the weights file's)");
  command->add_option("--weights,--model-file", o->weights,
                      "Weights: an .h5 from 'tessera models import' or its name, or a .caffemodel or .pth "
                      "(imported on first use and cached)");
  command->add_option("--proto-file", o->proto_file,
                      "neural-style's deploy .prototxt: checks that the weights are the backbone it describes");
  command->add_option("--content-layers", o->content_layers, "Content layers (default relu4_2; NIN relu7)")
      ->delimiter(',');
  command->add_option("--style-layers", o->style_layers,
                      "Style layers (default relu1_1,relu2_1,relu3_1,relu4_1,relu5_1; NIN relu0,relu3,relu7,relu12)")
      ->delimiter(',');
  command->add_option("--content-weight", o->content_weight, "Content loss weight")->capture_default_str();
  command->add_option("--style-weight", o->style_weight, "Style loss weight (per layer)")->capture_default_str();
  command->add_option("--tv-weight", o->tv_weight, "Total variation weight")->capture_default_str();
  command->add_option("--init", o->init, "Start from: random, content, or an image file (or image, with --init-image)")
      ->capture_default_str();
  command->add_option("--init-image", o->init_image, "The image --init image starts from (neural-style's form)");
  command->add_option("--optimizer", o->optimizer, "lbfgs or adam")->capture_default_str();
  command->add_option("--learning-rate", o->learning_rate,
                      "Adam's learning rate, in grey levels (1/255 of the RGB range) per step")
      ->capture_default_str();
  command->add_option("--lbfgs-history,--lbfgs-num-correction", o->lbfgs_history, "L-BFGS history pairs")->capture_default_str();
  command->add_option("--line-search", o->line_search,
                      "L-BFGS step: strong-wolfe (searches each step; may evaluate more than once per iteration) "
                      "or none (neural-style's fixed steps, which stall on large images)")
      ->capture_default_str();
  command->add_flag("--normalize-gradients", o->normalize_gradients,
                    "neural-style's -normalize_gradients: each loss term's feature gradient divided by its L1 norm "
                    "(with L-BFGS, implies --line-search none unless given)");
  command->add_option("--iterations,--num-iterations", o->iterations,
                      "Iterations (one evaluation each); with --scales, those of the coarsest scale")
      ->capture_default_str();
  command->add_option("--scales", o->scales,
                      "Coarse to fine: auto (one scale up to 1024 px; larger outputs start at 513-1024 px, the long "
                      "side doubling), N scales (the long side halving from the output's), or long sides "
                      "512,1024,... (the output's size is the last); each starts from the one before, upsampled")
      ->capture_default_str();
  command->add_option("--scale-iterations", o->scale_iterations,
                      "Iterations of each scale, coarsest first (default: --iterations, then half at each finer scale)")
      ->delimiter(',');
  command->add_option("--seed", o->seed, "Random seed (random init)")->capture_default_str();
  command->add_option("--original-colors", o->original_colors_value,
                      "Keep the content's colours (luminance transfer); also --original-colors 1 or 0")
      ->expected(0, 1);
  command->add_option("--pooling", o->pooling, "max or avg")->capture_default_str();
  command->add_option("--print-every,--print-iter", o->print_every, "Progress line period when not on a terminal")
      ->capture_default_str();
  command->add_option("--save-every,--save-iter", o->save_every, "Write OUTPUT_NNNN.ext every N iterations (0: never)")
      ->capture_default_str();
  command->add_option("--checkpoint-every", o->checkpoint_every,
                      "Write a checkpoint (OUTPUT.ckpt-sS-iN.h5, the newest two kept) every N iterations and at the "
                      "end of each scale; 0: only on SIGINT, SIGTERM (which stop) and SIGUSR1 (which goes on)")
      ->capture_default_str();
  command->add_flag("--keep-checkpoints", o->keep_checkpoints,
                    "Keep the checkpoints when the render finishes (by default they are removed then)");
  command->add_option("--resume", o->resume,
                      "Continue from a checkpoint FILE, or 'auto': the newest usable one next to the output (none: "
                      "start from the beginning). Any rank or tile count; the other settings must match");
  command->add_option("--backend", o->backend, "cpu or auto")->capture_default_str();
  command->add_option("--gpu", o->gpu, "neural-style's -gpu: -1 for the CPU, 0 for the GPU (--backend cuda)");
  command->add_option("--threads", o->threads, "CPU threads (0: the CPUs this process may use, shared among the MPI ranks on a node when they are not bound)")->capture_default_str();
  command->add_option("--precision", o->precision, "Activation storage: f32 (reference) or bf16")
      ->capture_default_str();
  command->add_option("--tiles", o->tiles, "Tile grid ROWSxCOLUMNS, or auto (one tile per MPI rank)")
      ->capture_default_str();
  command->add_option("--memory-per-rank", o->memory_per_rank,
                      "With --tiles auto: the most memory a rank may use (8GiB, 512MiB); tiles follow from it");
  command->add_option("--halo", o->halo, "Halo around each tile: exact (from the receptive field) or pixels")
      ->capture_default_str();
  command->add_option("--config", o->config, "TOML file with any of these settings (flags win)");
  command->add_option("--log-json", o->log_json, "Write one JSON object per iteration to this file");
  command->add_option("--bits", o->bits, "Output bits per channel: 8, 16, 32 (0: the format's default)")
      ->capture_default_str();
  command->add_flag("-q,--quiet", o->quiet, "No progress output");
  command->add_flag("--dry-run", o->dry_run,
                    "Check the inputs, show each scale's size, tiles and memory estimate, and stop without rendering");
  return [command, o] { return run_render(*command, *o); };
}

}  // namespace tessera::cli
