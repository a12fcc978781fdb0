// `tessera render`: neural-style's options in kebab-case, a TOML config that
// says the same things, progress, a JSON log, and an output written
// atomically, also when the run is interrupted.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <fstream>
#include <sstream>

#include "cli/commands.hpp"
#include "cli/config_file.hpp"
#include "cli/progress.hpp"
#include "tessera/backend.hpp"
#include "tessera/build_info.hpp"
#include "tessera/error.hpp"
#include "tessera/io/image_io.hpp"
#include "tessera/io/weights_file.hpp"
#include "tessera/model.hpp"
#include "tessera/render.hpp"
#include "tessera/size.hpp"
#include "tessera/tiling.hpp"

namespace tessera::cli {
namespace {

std::atomic<int> g_stop_signal{0};

// The first signal asks the loop to stop after the current iteration and
// write what it has; a second one ends the process at once.
extern "C" void on_stop_signal(int signal) {
  if (g_stop_signal.exchange(signal) != 0) {
    std::signal(signal, SIG_DFL);
    std::raise(signal);
  }
}

struct RenderOptions {
  std::string content;
  std::vector<std::string> styles;
  std::vector<float> style_blend_weights;
  std::string output = "out.png";
  std::string size = "512";
  float style_scale = 1.0f;
  std::string model;
  std::string weights;
  std::vector<std::string> content_layers;
  std::vector<std::string> style_layers;
  float content_weight = 5.0f;
  float style_weight = 100.0f;
  float tv_weight = 1e-3f;
  std::string init = "random";
  std::string optimizer = "lbfgs";
  float learning_rate = 10.0f;
  int lbfgs_history = 100;
  int iterations = 1000;
  std::uint64_t seed = 0;
  bool original_colors = false;
  std::string pooling = "max";
  int print_every = 50;
  int save_every = 0;
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

// The image for `path` at the given size; the size is checked first so that
// a typo in the path is reported before any work.
Image load_resized(const std::string& path, int width, int height, const char* what) {
  Image image = io::read_image(path);
  if (image.width == width && image.height == height) return image;
  spdlog::debug("{} {}: {}x{} -> {}x{}", what, path, image.width, image.height, width, height);
  return io::resize_image(image, width, height);
}

std::filesystem::path resolve_weights(const RenderOptions& o, const std::string& model) {
  if (!o.weights.empty()) {
    std::filesystem::path path(o.weights);
    if (std::filesystem::exists(path)) return path;
    // A bare name ("vgg19") means a file in the weights folder.
    if (!path.has_extension() && !path.has_parent_path()) {
      auto in_folder = std::filesystem::path(default_weights_folder()) / (o.weights + ".h5");
      if (std::filesystem::exists(in_folder)) return in_folder;
      fail("weights '", o.weights, "' not found (nor ", in_folder.string(), ")");
    }
    fail("weights file '", o.weights, "' not found");
  }
  auto fallback = std::filesystem::path(default_weights_folder()) / (model + ".h5");
  if (std::filesystem::exists(fallback)) return fallback;
  fail("no weights given: pass --weights FILE.h5 (import one with 'tessera models import'), or put ",
       fallback.string(), " in place");
}

std::string intermediate_name(const std::string& output, int iteration) {
  std::filesystem::path path(output);
  return (path.parent_path() / (path.stem().string() + fmt::format("_{:04}", iteration) + path.extension().string()))
      .string();
}

int run_render(CLI::App& command, RenderOptions& o) {
  if (!o.config.empty()) apply_config_file(command, o.config);
  auto given = [&](const char* name) { return command.get_option(name)->count() > 0; };

  // --- check everything cheap before any heavy work
  if (o.content.empty()) fail("--content is required (the photo to restyle)");
  auto styles = split_list(o.styles);
  if (styles.empty()) fail("--style is required (one or more images, comma separated)");
  if (!o.style_blend_weights.empty() && o.style_blend_weights.size() != styles.size())
    fail("--style-blend-weights has ", o.style_blend_weights.size(), " values for ", styles.size(), " style images");
  SizeRequest size = parse_size(o.size);
  if (!(o.style_scale > 0.0f)) fail("--style-scale must be positive, got ", o.style_scale);
  if (o.iterations < 1) fail("--iterations must be at least 1, got ", o.iterations);
  parse_precision(o.precision);
  if (o.pooling != "max" && o.pooling != "avg") fail("--pooling must be max or avg, got '", o.pooling, "'");
  if (o.optimizer != "lbfgs" && o.optimizer != "adam")
    fail("--optimizer must be lbfgs or adam, got '", o.optimizer, "'");
  {
    auto extension = std::filesystem::path(o.output).extension().string();
    std::transform(extension.begin(), extension.end(), extension.begin(), ::tolower);
    const auto& supported = io::supported_output_extensions();
    if (std::find(supported.begin(), supported.end(), extension) == supported.end())
      fail("cannot write output '", o.output, "': unsupported extension '", extension, "' (use one of ",
           fmt::format("{}", fmt::join(supported, ", ")), ")");
    auto folder = std::filesystem::path(o.output).parent_path();
    if (!folder.empty() && !std::filesystem::is_directory(folder))
      fail("cannot write output '", o.output, "': folder '", folder.string(), "' does not exist");
  }

  // --- weights and layers
  auto weights_path = resolve_weights(o, o.model.empty() ? "vgg19" : o.model);
  WeightSet weights = io::read_weights(weights_path);
  std::string model = o.model.empty() ? weights.architecture : o.model;
  if (model != weights.architecture)
    fail("--model ", model, " does not match the weights in ", weights_path.string(), ", which are for ",
         weights.architecture);
  const Architecture& arch = architecture(model);
  std::string deepest = deepest_available_layer(arch, weights);
  auto available = [&](const std::string& layer) {
    int index = arch.index_of(layer);
    return index >= 0 && index <= arch.index_of(deepest);
  };

  // Said once the inputs are known to be good, so that an error is one line.
  std::vector<std::string> notes;
  RenderSettings settings;
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
  settings.iterations = o.iterations;
  settings.seed = o.seed;
  settings.original_colors = o.original_colors;

  // --- images
  RenderInputs inputs;
  inputs.weights = &weights;
  // Rank 0 reads and resizes the images; the others receive them.
  Communicator& communicator = process_communicator();
  const bool root = communicator.rank() == 0;
  auto read_noting = [&notes](const std::string& path) {
    io::ImageReadResult read = io::read_image_with_notes(path);
    for (const auto& note : read.notes) notes.push_back(path + ": " + note);
    return std::move(read.image);
  };
  if (o.init == "random") {
    settings.init = InitKind::random;
  } else if (o.init == "content") {
    settings.init = InitKind::content;
  } else {
    settings.init = InitKind::image;
  }
  int width = 0, height = 0;
  if (root) {
    Image content_full = read_noting(o.content);
    size.resolve(content_full.width, content_full.height, width, height);
    inputs.content = content_full.width == width && content_full.height == height
                         ? std::move(content_full)
                         : io::resize_image(content_full, width, height);
    // neural-style's style scale: the style image's long side is style-scale
    // times the output's long side.
    int style_long_side = std::max(1, int(std::lround(o.style_scale * std::max(width, height))));
    for (const auto& path : styles) {
      Image style = read_noting(path);
      SizeRequest style_size;
      style_size.long_side_px = style_long_side;
      int sw = 0, sh = 0;
      style_size.resolve(style.width, style.height, sw, sh);
      inputs.styles.push_back(sw == style.width && sh == style.height ? std::move(style)
                                                                      : io::resize_image(style, sw, sh));
    }
    if (settings.init == InitKind::image) inputs.init_image = load_resized(o.init, width, height, "init image");
  }
  if (communicator.size() > 1) {
    // Only the sizes travel now; the renderer scatters to each rank the
    // parts of the images its tiles need.
    auto share = [&](Image& image) {
      std::vector<float> header = {float(image.width), float(image.height)};
      communicator.broadcast(header);
      if (!root) {
        image.width = int(header[0]);
        image.height = int(header[1]);
        image.pixels.clear();
      }
    };
    share(inputs.content);
    width = inputs.content.width;
    height = inputs.content.height;
    inputs.styles.resize(styles.size());
    for (auto& style : inputs.styles) share(style);
    if (settings.init == InitKind::image) {
      if (!root) inputs.init_image = Image();
      share(*inputs.init_image);
    }
  }
  inputs.blend_weights = o.style_blend_weights;

  // Tiles: one per rank unless the user chose a grid; more per rank when a
  // memory budget asks for it.
  if (o.tiles == "auto") {
    const Architecture& a = architecture(model);
    std::vector<std::string> used = settings.objective.layers();
    const int stride = total_stride_for(a, used), halo = halo_width_for(a, used);
    const int block = reduction_block_for(width, height, stride);
    const int ranks = communicator.size();
    const int optimiser_vectors = o.optimizer == "adam" ? 2 : 2 * o.lbfgs_history + 2;
    const int activation_bytes = o.precision == "bf16" ? 2 : 4;
    const double budget = o.memory_per_rank.empty() ? 0.0 : parse_bytes(o.memory_per_rank);
    bool chosen = false;
    double needed = 0.0;
    for (int per_rank = 1; per_rank <= 4096 && !chosen; per_rank *= 2) {
      // rows x columns = ranks x per_rank, as square as the image allows.
      const int tiles = ranks * per_rank;
      int rows = 1;
      for (int r = 1; r * r <= tiles; ++r)
        if (tiles % r == 0) rows = r;
      int columns = tiles / rows;
      if (height > width) std::swap(rows, columns);
      if (rows > height / block || columns > width / block) break;
      settings.tile_rows = rows;
      settings.tile_columns = columns;
      if (budget == 0.0) {
        chosen = true;
        break;
      }
      TileGrid grid = TileGrid::make(width, height, rows, columns, stride, halo, block);
      auto owners = place_tiles(int(grid.tiles.size()), ranks);
      needed = 0.0;
      for (int r = 0; r < ranks; ++r)
        needed = std::max(needed, estimate_rank_memory(a, settings.objective.content_layers,
                                                       settings.objective.style_layers, grid, owners, r,
                                                       activation_bytes, optimiser_vectors)
                                      .total());
      if (needed <= budget) {
        chosen = true;
        notes.push_back(fmt::format("{}x{} tiles for --memory-per-rank {}: about {:.1f} GiB per rank (estimate)",
                                    rows, columns, o.memory_per_rank, needed / (1u << 30)));
      }
    }
    if (!chosen)
      fail("the render does not fit in --memory-per-rank ", o.memory_per_rank, " with as many tiles as the image "
           "holds (", settings.tile_rows, "x", settings.tile_columns, " need about ",
           fmt::format("{:.1f}", needed / (1u << 30)), " GiB per rank): give more memory, more ranks, "
           "--precision bf16, or --optimizer adam");
  } else {
    if (!o.memory_per_rank.empty()) fail("--memory-per-rank chooses the tiles: use it with --tiles auto");
    parse_tile_grid(o.tiles, settings.tile_rows, settings.tile_columns);
  }
  if (o.halo != "exact") {
    try {
      settings.halo_px = std::stoi(o.halo);
    } catch (const std::exception&) {
      fail("--halo must be 'exact' or a width in pixels, got '", o.halo, "'");
    }
    if (settings.halo_px < 0) fail("--halo must not be negative");

  }

  // --- backend and renderer
  auto backend = make_backend(o.backend);
  backend->set_threads(o.threads);
  backend->set_precision(parse_precision(o.precision));
  // A halo below the rule's is an approximation: measure its error on a crop
  // of the content image (the gradient at the start, 2x2 tiles with that
  // halo against one exact tile), in one process on rank 0, before the render.
  std::string halo_error;
  if (settings.halo_px >= 0 && root) {
    const Architecture& a = architecture(model);
    std::vector<std::string> used = settings.objective.layers();
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
      probe.init = settings.init == InitKind::image ? InitKind::content : settings.init;
      RenderInputs crop_inputs;
      crop_inputs.weights = &weights;
      crop_inputs.content = crop;
      crop_inputs.styles = inputs.styles;
      crop_inputs.blend_weights = inputs.blend_weights;
      SingleProcess alone;
      Renderer probe_renderer(*backend, alone, probe, std::move(crop_inputs));
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
      halo_error = fmt::format("halo {} px (exact: {} px): on a {}x{} crop in 2x2 tiles the gradient is off by up "
                               "to {:.2g} % of its largest value",
                               settings.halo_px, exact, crop_w, crop_h, largest > 0 ? 100.0 * worst / largest : 0.0);
    } catch (const Error& e) {
      halo_error = fmt::format("halo {} px: its error could not be measured ({})", settings.halo_px, e.what());
    }
  }

  Renderer renderer(*backend, communicator, settings, std::move(inputs));
  if (!halo_error.empty()) notes.push_back(halo_error);
  weights = WeightSet{};  // the backend holds its own copy now
  for (const auto& note : notes) spdlog::info("{}", note);
  spdlog::info("rendering {}x{} with {} ({}), {} iterations of {}, on {}{}", width, height, model,
               weights_path.filename().string(), o.iterations, o.optimizer, backend->describe().front(),
               communicator.size() > 1 || settings.tile_rows * settings.tile_columns > 1
                   ? fmt::format(", {} rank(s), {}x{} tiles, halo {} px", communicator.size(), settings.tile_rows,
                                 settings.tile_columns, renderer.objective().grid().halo)
                   : std::string());

  std::map<std::string, std::string> metadata = {
      {"software", std::string("tessera ") + build_info::version},
      {"content", o.content},
      {"style", fmt::format("{}", fmt::join(styles, ","))},
      {"size", fmt::format("{}x{}", width, height)},
      {"model", model},
      {"weights", weights_path.filename().string()},
      {"content_layers", fmt::format("{}", fmt::join(content_layers, ","))},
      {"style_layers", fmt::format("{}", fmt::join(style_layers, ","))},
      {"content_weight", fmt::format("{}", settings.objective.content_weight)},
      {"style_weight", fmt::format("{}", settings.objective.style_weight)},
      {"tv_weight", fmt::format("{}", settings.objective.tv_weight)},
      {"style_scale", fmt::format("{}", o.style_scale)},
      {"init", o.init},
      {"optimizer", o.optimizer},
      {"pooling", o.pooling},
      {"seed", std::to_string(o.seed)},
      {"original_colors", o.original_colors ? "true" : "false"},
      {"precision", o.precision},
      {"tiles", fmt::format("{}x{}", settings.tile_rows, settings.tile_columns)},
      {"halo", o.halo},
  };
  auto write = [&](const std::string& path, int iterations_done) {
    io::WriteOptions write_options;
    write_options.bits = o.bits;
    write_options.metadata = metadata;
    write_options.metadata["iterations"] = std::to_string(iterations_done);
    Image image = renderer.image();  // every rank takes part; rank 0 gets the image
    if (root) io::write_image(path, image, write_options);
  };

  std::ofstream log;
  if (!o.log_json.empty() && root) {
    log.open(o.log_json, std::ios::trunc);
    if (!log) fail("cannot write the JSON log '", o.log_json, "'");
  }

  g_stop_signal.store(0);
  auto previous_int = std::signal(SIGINT, on_stop_signal);
  auto previous_term = std::signal(SIGTERM, on_stop_signal);
  Progress progress(stderr, o.print_every, o.quiet || !root);
  int done = renderer.run([&](const IterationReport& r) {
    progress.update(r);
    auto io_start = std::chrono::steady_clock::now();
    if (o.save_every > 0 && r.iteration % o.save_every == 0 && r.iteration < r.iterations) {
      progress.finish();
      write(intermediate_name(o.output, r.iteration), r.iteration);
    }
    if (log.is_open()) {
      double io_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - io_start).count();
      nlohmann::json line = {{"iteration", r.iteration},
                             {"loss", r.losses.total()},
                             {"content_loss", r.losses.content},
                             {"style_loss", r.losses.style},
                             {"tv_loss", r.losses.tv},
                             {"style_loss_per_layer", r.losses.style_per_layer},
                             {"seconds", r.seconds},
                             {"seconds_this_iteration", r.seconds_this_iteration},
                             {"compute_seconds", r.times.compute},
                             {"halo_seconds", r.times.halo},
                             {"allreduce_seconds", r.times.allreduce},
                             {"io_seconds", io_seconds},
                             {"ranks", communicator.size()}};
      log << line.dump() << '\n';
      log.flush();
    }
    // Every rank stops at the same iteration, or the collectives would hang.
    double stop = g_stop_signal.load() != 0 ? 1.0 : 0.0;
    if (communicator.size() > 1) stop = communicator.max(stop);
    return stop == 0.0;
  });
  progress.finish();
  std::signal(SIGINT, previous_int);
  std::signal(SIGTERM, previous_term);

  write(o.output, done);
  if (int signal = g_stop_signal.load(); signal != 0 || renderer.stop_reason() == "interrupted") {
    spdlog::warn("interrupted ({}) after {} of {} iterations; the image so far is in {}",
                 signal == SIGINT ? "SIGINT" : signal == SIGTERM ? "SIGTERM" : "another rank", done, o.iterations,
                 o.output);
    return kExitInterrupted;
  }
  if (!renderer.stop_reason().empty())
    spdlog::warn("stopped after {} of {} iterations: {}", done, o.iterations, renderer.stop_reason());
  spdlog::info("wrote {}", o.output);
  return 0;
}

}  // namespace

Command add_render_command(CLI::App& app) {
  auto* command = app.add_subcommand("render", "Render an image in the style of others (Gatys et al.)");
  auto o = std::make_shared<RenderOptions>();
  command->add_option("--content", o->content, "Content image (any format OpenImageIO reads)");
  command->add_option("--style", o->styles, "Style image(s), comma separated")->delimiter(',');
  command->add_option("--style-blend-weights", o->style_blend_weights,
                      "Weights of the style images' Gram targets (normalised to sum to 1)")
      ->delimiter(',');
  command->add_option("-o,--output", o->output, "Output image: .png .jpg .tif .exr")->capture_default_str();
  command->add_option("--size", o->size,
                      "Output size: long side (512), WxH (1920x1080), hd, 4k, 8k, or print (24x36in@300dpi)")
      ->capture_default_str();
  command->add_option("--style-scale", o->style_scale, "Style image long side relative to the output's")
      ->capture_default_str();
  command->add_option("--model", o->model, "Backbone: vgg19, vgg16, nin (default: the weights file's)");
  command->add_option("--weights", o->weights, "Weights (.h5 from 'tessera models import', or its name)");
  command->add_option("--content-layers", o->content_layers, "Content layers (default relu4_2; NIN relu7)")
      ->delimiter(',');
  command->add_option("--style-layers", o->style_layers,
                      "Style layers (default relu1_1,relu2_1,relu3_1,relu4_1,relu5_1; NIN relu0,relu3,relu7,relu12)")
      ->delimiter(',');
  command->add_option("--content-weight", o->content_weight, "Content loss weight")->capture_default_str();
  command->add_option("--style-weight", o->style_weight, "Style loss weight (per layer)")->capture_default_str();
  command->add_option("--tv-weight", o->tv_weight, "Total variation weight")->capture_default_str();
  command->add_option("--init", o->init, "Start from: random, content, or an image file")->capture_default_str();
  command->add_option("--optimizer", o->optimizer, "lbfgs or adam")->capture_default_str();
  command->add_option("--learning-rate", o->learning_rate, "Adam's learning rate")->capture_default_str();
  command->add_option("--lbfgs-history", o->lbfgs_history, "L-BFGS history pairs")->capture_default_str();
  command->add_option("--iterations", o->iterations, "Iterations (one evaluation each)")->capture_default_str();
  command->add_option("--seed", o->seed, "Random seed (random init)")->capture_default_str();
  command->add_flag("--original-colors", o->original_colors, "Keep the content's colours (luminance transfer)");
  command->add_option("--pooling", o->pooling, "max or avg")->capture_default_str();
  command->add_option("--print-every", o->print_every, "Progress line period when not on a terminal")
      ->capture_default_str();
  command->add_option("--save-every", o->save_every, "Write OUTPUT_NNNN.ext every N iterations (0: never)")
      ->capture_default_str();
  command->add_option("--backend", o->backend, "cpu or auto")->capture_default_str();
  command->add_option("--threads", o->threads, "CPU threads (0: all cores)")->capture_default_str();
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
  return [command, o] { return run_render(*command, *o); };
}

}  // namespace tessera::cli
