#include "render/job/job_plan.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <sstream>
#include <tuple>

#include "render/job/imported_weights.hpp"
#include "render/job/weights_lookup.hpp"
#include "tessera/error.hpp"
#include "tessera/io/image_io.hpp"
#include "tessera/io/weights_file.hpp"
#include "tessera/model.hpp"
#include "tessera/tiling.hpp"

namespace tessera::job {
namespace {

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

}  // namespace

JobPlan plan_job(const RenderRequest& request, bool writes_output) {
  JobPlan plan;
  plan.request = request;
  RenderRequest& o = plan.request;
  auto given = [&](const char* name) { return o.was_given(name); };

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
  if (o.lbfgs_history < 1) fail("--lbfgs-history must be at least 1, got ", o.lbfgs_history);
  if (o.save_every < 0) fail("--save-every must be 0 (never) or more, got ", o.save_every);
  if (o.bits != 0 && o.bits != 8 && o.bits != 16 && o.bits != 32)
    fail("--bits must be 8, 16 or 32 (0: the format's default), got ", o.bits);
  if (o.precision != "auto" && o.precision != "f32" && o.precision != "bf16")
    fail("--precision must be f32, bf16 or auto, got '", o.precision, "'");
  if (o.pooling != "max" && o.pooling != "avg") fail("--pooling must be max or avg, got '", o.pooling, "'");
  if (o.optimizer != "lbfgs" && o.optimizer != "adam")
    fail("--optimizer must be lbfgs or adam, got '", o.optimizer, "'");
  {
    // Before any work: a render can take hours, and only then write. Rank 0
    // writes the image, so it alone tries the folder.
    io::WriteOptions output_options;
    output_options.bits = o.bits;
    if (writes_output) io::check_output(o.output, output_options);
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
  plan.weights_path = resolve_weights(o.weights, o.model.empty() ? "vgg19" : o.model);
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

}  // namespace tessera::job
