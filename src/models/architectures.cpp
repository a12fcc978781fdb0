// The three backbones neural-style offers, as layer lists with Caffe names.
#include <algorithm>
#include <map>
#include <string>

#include "tessera/error.hpp"
#include "tessera/model.hpp"

namespace tessera {
namespace {

LayerSpec conv(std::string name, int in, int out, int kernel, int stride, int pad) {
  return {LayerKind::conv, std::move(name), in, out, kernel, stride, pad, false};
}
LayerSpec relu(std::string name, int channels) {
  return {LayerKind::relu, std::move(name), channels, channels, 1, 1, 0, false};
}
LayerSpec pool(std::string name, int channels, int kernel, int stride, bool ceil_mode) {
  return {LayerKind::max_pool, std::move(name), channels, channels, kernel, stride, 0, ceil_mode};
}

// VGG: blocks of 3x3 convolutions (pad 1), each followed by a ReLU, with a
// 2x2/2 max pool after every block but the last.
Architecture make_vgg(std::string name, const std::vector<int>& convs_per_block) {
  const int widths[] = {64, 128, 256, 512, 512};
  Architecture arch;
  arch.name = std::move(name);
  int in = 3;
  for (int block = 0; block < 5; ++block) {
    for (int i = 1; i <= convs_per_block[block]; ++i) {
      std::string suffix = std::to_string(block + 1) + "_" + std::to_string(i);
      arch.layers.push_back(conv("conv" + suffix, in, widths[block], 3, 1, 1));
      arch.layers.push_back(relu("relu" + suffix, widths[block]));
      in = widths[block];
    }
    if (block < 4) arch.layers.push_back(pool("pool" + std::to_string(block + 1), in, 2, 2, false));
  }
  arch.default_content_layer = "relu4_2";
  arch.default_style_layers = {"relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"};
  return arch;
}

// nin_imagenet_conv as neural-style loads it (Caffe names; ReLUs are numbered
// as in that prototxt, which has no relu4). Pools are 3x3/2 with Caffe's
// ceil rounding of the output size.
Architecture make_nin() {
  Architecture arch;
  arch.name = "nin";
  auto& l = arch.layers;
  l.push_back(conv("conv1", 3, 96, 11, 4, 0));
  l.push_back(relu("relu0", 96));
  l.push_back(conv("cccp1", 96, 96, 1, 1, 0));
  l.push_back(relu("relu1", 96));
  l.push_back(conv("cccp2", 96, 96, 1, 1, 0));
  l.push_back(relu("relu2", 96));
  l.push_back(pool("pool0", 96, 3, 2, true));
  l.push_back(conv("conv2", 96, 256, 5, 1, 2));
  l.push_back(relu("relu3", 256));
  l.push_back(conv("cccp3", 256, 256, 1, 1, 0));
  l.push_back(relu("relu5", 256));
  l.push_back(conv("cccp4", 256, 256, 1, 1, 0));
  l.push_back(relu("relu6", 256));
  l.push_back(pool("pool2", 256, 3, 2, true));
  l.push_back(conv("conv3", 256, 384, 3, 1, 1));
  l.push_back(relu("relu7", 384));
  l.push_back(conv("cccp5", 384, 384, 1, 1, 0));
  l.push_back(relu("relu8", 384));
  l.push_back(conv("cccp6", 384, 384, 1, 1, 0));
  l.push_back(relu("relu9", 384));
  l.push_back(pool("pool3", 384, 3, 2, true));
  l.push_back(conv("conv4-1024", 384, 1024, 3, 1, 1));
  l.push_back(relu("relu10", 1024));
  l.push_back(conv("cccp7-1024", 1024, 1024, 1, 1, 0));
  l.push_back(relu("relu11", 1024));
  l.push_back(conv("cccp8-1024", 1024, 1000, 1, 1, 0));
  l.push_back(relu("relu12", 1000));
  arch.default_content_layer = "relu7";
  arch.default_style_layers = {"relu0", "relu3", "relu7", "relu12"};
  return arch;
}

const std::map<std::string, Architecture, std::less<>>& registry() {
  static const std::map<std::string, Architecture, std::less<>> all = {
      {"vgg19", make_vgg("vgg19", {2, 2, 4, 4, 4})},
      {"vgg16", make_vgg("vgg16", {2, 2, 3, 3, 3})},
      {"nin", make_nin()},
  };
  return all;
}

}  // namespace

std::vector<const LayerSpec*> Architecture::convolutions() const {
  std::vector<const LayerSpec*> out;
  for (const auto& layer : layers)
    if (layer.kind == LayerKind::conv) out.push_back(&layer);
  return out;
}

int Architecture::index_of(std::string_view layer_name) const {
  for (std::size_t i = 0; i < layers.size(); ++i)
    if (layers[i].name == layer_name) return int(i);
  return -1;
}

const Architecture& architecture(std::string_view name) {
  const auto& all = registry();
  auto it = all.find(name);
  if (it == all.end()) fail("unknown model '", name, "' (known: vgg19, vgg16, nin)");
  return it->second;
}

std::vector<std::string> architecture_names() {
  std::vector<std::string> names;
  for (const auto& [name, arch] : registry()) names.push_back(name);
  return names;
}

ReceptiveField receptive_field(const Architecture& arch, std::string_view layer_name) {
  int index = arch.index_of(layer_name);
  if (index < 0) fail("model ", arch.name, " has no layer '", layer_name, "'");
  // Standard recurrence: each layer widens the field by (kernel - 1) times the
  // stride accumulated before it.
  ReceptiveField field;
  for (int i = 0; i <= index; ++i) {
    const auto& layer = arch.layers[i];
    if (layer.kind == LayerKind::relu) continue;
    field.size_px += (layer.kernel - 1) * field.stride_px;
    field.stride_px *= layer.stride;
  }
  return field;
}

MapSize feature_map_size(const Architecture& arch, std::string_view layer_name, int height, int width) {
  int index = arch.index_of(layer_name);
  if (index < 0) fail("model ", arch.name, " has no layer '", layer_name, "'");
  MapSize size{3, height, width};
  for (int i = 0; i <= index; ++i) {
    const auto& layer = arch.layers[i];
    if (layer.kind == LayerKind::relu) continue;
    auto out = [&](int in) {
      if (in + 2 * layer.pad < layer.kernel) return 0;
      int span = in + 2 * layer.pad - layer.kernel;
      if (layer.kind == LayerKind::conv || !layer.ceil_mode) return span / layer.stride + 1;
      int n = (span + layer.stride - 1) / layer.stride + 1;
      if ((n - 1) * layer.stride >= in + layer.pad) --n;
      return n;
    };
    size = {layer.out_channels, out(size.height), out(size.width)};
    if (size.height < 1 || size.width < 1) return {};
  }
  return size;
}

void validate_weights(const Architecture& arch, const WeightSet& weights) {
  if (weights.architecture != arch.name)
    fail("weights are for model '", weights.architecture, "', not '", arch.name, "'");
  auto convs = arch.convolutions();
  if (weights.convs.empty()) fail("the weights for ", arch.name, " hold no convolution");
  if (weights.convs.size() > convs.size())
    fail("the weights hold ", weights.convs.size(), " convolutions; ", arch.name, " has only ",
         convs.size());
  for (std::size_t i = 0; i < weights.convs.size(); ++i) {
    const auto& have = weights.convs[i];
    const auto& want = *convs[i];
    if (have.name != want.name)
      fail("weights for ", arch.name, ": convolution ", i + 1, " is '", have.name, "', expected '",
           want.name, "' (a file must cover the first layers in order)");
    if (have.out_channels != want.out_channels || have.in_channels != want.in_channels ||
        have.kernel_h != want.kernel || have.kernel_w != want.kernel)
      fail("weights for ", arch.name, ": ", have.name, " has shape ", have.out_channels, "x",
           have.in_channels, "x", have.kernel_h, "x", have.kernel_w, ", expected ", want.out_channels,
           "x", want.in_channels, "x", want.kernel, "x", want.kernel);
    std::size_t count = std::size_t(have.out_channels) * have.in_channels * have.kernel_h * have.kernel_w;
    if (have.weight.size() != count || have.bias.size() != std::size_t(have.out_channels))
      fail("weights for ", arch.name, ": ", have.name, " holds ", have.weight.size(), " weights and ",
           have.bias.size(), " biases, expected ", count, " and ", have.out_channels);
  }
}

std::string deepest_available_layer(const Architecture& arch, const WeightSet& weights) {
  // Everything up to the layer before the first convolution the weights lack.
  std::size_t covered = 0;
  std::string deepest;
  for (const auto& layer : arch.layers) {
    if (layer.kind == LayerKind::conv) {
      if (covered == weights.convs.size()) break;
      ++covered;
    }
    deepest = layer.name;
  }
  // A trailing pool is not a useful feature layer; report the ReLU before it.
  int index = arch.index_of(deepest);
  while (index > 0 && arch.layers[index].kind != LayerKind::relu) --index;
  return arch.layers[index].name;
}

}  // namespace tessera
