#include "render/job/render_record.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "tessera/build_info.hpp"
#include "tessera/io/checkpoint.hpp"

namespace tessera::job {

Record settings_record(const JobPlan& plan) {
  const RenderRequest& o = plan.request;
  const RenderSettings& settings = plan.settings;
  return {
      {"model", plan.model},
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

Record resume_identity(const JobPlan& plan, int width, int height, const std::vector<Scale>& scales) {
  const RenderRequest& o = plan.request;
  const WeightSet& weights = plan.weights;
  auto weights_identity = weights.provenance.count("source_sha256") ? weights.provenance.at("source_sha256")
                                                                     : io::file_sha256(plan.weights_path);
  std::vector<std::string> scale_sizes, style_identities;
  for (const auto& scale : scales) scale_sizes.push_back(fmt::format("{}x{}", scale.width, scale.height));
  for (const auto& path : plan.styles) style_identities.push_back(io::file_sha256(path));
  Record identity = settings_record(plan);
  identity.insert({
      {"weights", fmt::format("{} up to {} (sha256 {})", weights.architecture, plan.deepest, weights_identity)},
      {"content", io::file_sha256(o.content)},
      {"style", fmt::format("{}", fmt::join(style_identities, ","))},
      {"style_blend_weights", fmt::format("{}", fmt::join(o.style_blend_weights, ","))},
      {"size", fmt::format("{}x{}", width, height)},
      {"scales", fmt::format("{}", fmt::join(scale_sizes, ","))},
      {"init", plan.first_init == InitKind::image ? "image " + io::file_sha256(o.init) : o.init},
      {"learning_rate", o.optimizer == "adam" ? fmt::format("{}", o.learning_rate) : "1"},
      {"lbfgs_history", o.optimizer == "lbfgs" ? std::to_string(o.lbfgs_history) : "-"},
      {"fit", plan.size.exact() ? o.fit : "-"},
  });
  return identity;
}

Record image_metadata(const JobPlan& plan, const std::vector<Scale>& scales, int s,
                      const RenderSettings& scale_settings) {
  const RenderRequest& o = plan.request;
  Record metadata = settings_record(plan);
  metadata.insert({
      {"software", std::string("tessera ") + build_info::version},
      {"content", o.content},
      {"style", fmt::format("{}", fmt::join(plan.styles, ","))},
      {"size", fmt::format("{}x{}", scales[s].width, scales[s].height)},
      {"weights", plan.weights_path.filename().string()},
      {"init", o.init},
      {"original_colors", o.original_colors ? "true" : "false"},
      {"tiles", fmt::format("{}x{}", scale_settings.tile_rows, scale_settings.tile_columns)},
      {"halo", o.halo},
      {"scale", fmt::format("{} of {}", s + 1, scales.size())},
  });
  return metadata;
}

}  // namespace tessera::job
