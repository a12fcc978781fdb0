#include "render/job/job_inputs.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "tessera/io/image_io.hpp"

namespace tessera::job {

SourceImages read_sources(const JobPlan& plan, Communicator& communicator, std::vector<std::string>& notes) {
  const RenderRequest& o = plan.request;
  SourceImages sources;
  auto read_noting = [&notes](const std::string& path) {
    io::ImageReadResult read = io::read_image_with_notes(path);
    for (const auto& note : read.notes) notes.push_back(path + ": " + note);
    return std::move(read.image);
  };
  std::vector<float> dimensions = {0.0f, 0.0f};
  if (communicator.rank() == 0) {
    Image& content = sources.content;
    content = read_noting(o.content);
    int width = 0, height = 0;
    plan.size.resolve(content.width, content.height, width, height);
    dimensions = {float(width), float(height)};
    for (const auto& path : plan.styles) sources.styles.push_back(read_noting(path));
    if (plan.first_init == InitKind::image) sources.init = io::read_image(o.init);
    // An output of its own aspect ratio (WxH, presets, print sizes): the
    // content (and an initial image) cropped or padded to it, once.
    const io::Fit fit = io::parse_fit(o.fit);
    if (plan.size.exact() && fit != io::Fit::stretch) {
      Image fitted = io::fit_aspect(content, width, height, fit);
      if (fitted.width != content.width || fitted.height != content.height)
        notes.push_back(fmt::format("the content ({}x{}) {} to {}x{}, the output's {}:{} shape (--fit {}; "
                                    "--fit stretch keeps it whole)",
                                    content.width, content.height,
                                    fit == io::Fit::crop ? "cropped" : "padded with black", fitted.width,
                                    fitted.height, width / std::gcd(width, height), height / std::gcd(width, height),
                                    o.fit));
      content = std::move(fitted);
      if (plan.first_init == InitKind::image) sources.init = io::fit_aspect(sources.init, width, height, fit);
    } else if (plan.size.exact() &&
               std::abs(double(content.width) / content.height - double(width) / height) > 0.01) {
      notes.push_back(fmt::format("the content ({}x{}) stretched to {}x{} (--fit stretch)", content.width,
                                  content.height, width, height));
    }
  }
  communicator.broadcast(dimensions);
  sources.width = int(dimensions[0]);
  sources.height = int(dimensions[1]);
  return sources;
}

RenderInputs scale_inputs(const JobPlan& plan, const SourceImages& sources, const Scale& scale, InitKind init,
                          Communicator& communicator) {
  const RenderRequest& o = plan.request;
  RenderInputs inputs;
  inputs.weights = &plan.weights;
  inputs.blend_weights = o.style_blend_weights;
  const bool root = communicator.rank() == 0;
  if (root) {
    auto at_scale = [&](const Image& image) {
      return image.width == scale.width && image.height == scale.height
                 ? image
                 : io::resize_image(image, scale.width, scale.height);
    };
    inputs.content = at_scale(sources.content);
    // neural-style's style scale: the style image's long side is
    // style-scale times this scale's long side.
    int style_long_side = std::max(1, int(std::lround(o.style_scale * std::max(scale.width, scale.height))));
    for (const auto& style : sources.styles) {
      SizeRequest style_size;
      style_size.long_side_px = style_long_side;
      int sw = 0, sh = 0;
      style_size.resolve(style.width, style.height, sw, sh);
      inputs.styles.push_back(sw == style.width && sh == style.height ? style : io::resize_image(style, sw, sh));
    }
    if (init == InitKind::image) inputs.init_image = at_scale(sources.init);
  } else {
    // Only the sizes travel now; the renderer scatters to each rank the
    // parts of the images its tiles need.
    inputs.content.width = scale.width;
    inputs.content.height = scale.height;
    inputs.styles.resize(plan.styles.size());
  }
  if (communicator.size() > 1) {
    std::vector<float> style_dimensions;
    for (const auto& style : inputs.styles)
      style_dimensions.insert(style_dimensions.end(), {float(style.width), float(style.height)});
    communicator.broadcast(style_dimensions);
    for (std::size_t k = 0; k < inputs.styles.size(); ++k) {
      inputs.styles[k].width = int(style_dimensions[2 * k]);
      inputs.styles[k].height = int(style_dimensions[2 * k + 1]);
    }
    if (!root && init == InitKind::image) {
      inputs.init_image = Image();
      inputs.init_image->width = scale.width;
      inputs.init_image->height = scale.height;
    }
  }
  return inputs;
}

}  // namespace tessera::job
