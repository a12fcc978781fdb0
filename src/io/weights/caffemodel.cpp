// Caffe .caffemodel files: a serialized NetParameter (caffe_minimal.proto).
// neural-style's models (VGG_ILSVRC_19_layers, VGG_ILSVRC_16_layers,
// nin_imagenet_conv) name their convolutions exactly as tessera does, so the
// mapping is by name; the input convention is Caffe's.
#include <fcntl.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <map>
#include <set>
#include <sstream>

#include "weights/caffe_minimal.pb.h"  // generated into the build folder
#include "importers.hpp"
#include "tessera/error.hpp"
#include "tessera/model.hpp"

namespace tessera::io::detail {
namespace {

constexpr int v1_convolution_type = 4;  // V1LayerParameter.LayerType.CONVOLUTION

struct CaffeConv {
  std::string name;
  const tessera::caffe::BlobProto* weight = nullptr;
  const tessera::caffe::BlobProto* bias = nullptr;
  int blob_count = 0;
};

std::vector<std::int64_t> blob_shape(const tessera::caffe::BlobProto& blob) {
  if (blob.has_shape()) return {blob.shape().dim().begin(), blob.shape().dim().end()};
  return {blob.num(), blob.channels(), blob.height(), blob.width()};
}

// Shape as a 4-D OIHW weight; old files store it as num/channels/height/width,
// new ones as BlobShape.
std::int64_t checked_count(const std::vector<std::int64_t>& shape, const std::string& what) {
  std::int64_t count = 1;
  for (std::int64_t dim : shape) {
    if (dim < 0 || (dim > 0 && count > (std::int64_t(1) << 40) / dim))
      fail(what, " has an impossible shape ", shape_string(shape));
    count *= dim;
  }
  return count;
}

std::vector<float> blob_values(const tessera::caffe::BlobProto& blob, std::int64_t count, const std::string& what) {
  if (blob.data_size() == count) return {blob.data().begin(), blob.data().end()};
  if (blob.data_size() == 0 && blob.double_data_size() == count) {
    std::vector<float> values(static_cast<std::size_t>(count));
    for (std::int64_t i = 0; i < count; ++i) values[std::size_t(i)] = float(blob.double_data(int(i)));
    return values;
  }
  fail(what, " declares ", count, " values but holds ", blob.data_size() ? blob.data_size() : blob.double_data_size());
}

void add_conv(std::vector<CaffeConv>& convs, const std::string& name,
              const google::protobuf::RepeatedPtrField<tessera::caffe::BlobProto>& blobs) {
  for (const auto& existing : convs)
    if (existing.name == name) return;  // the first layer of a name wins
  CaffeConv conv;
  conv.name = name;
  conv.blob_count = blobs.size();
  if (blobs.size() >= 1) conv.weight = &blobs.Get(0);
  if (blobs.size() >= 2) conv.bias = &blobs.Get(1);
  convs.push_back(conv);
}

std::vector<CaffeConv> find_convolutions(const tessera::caffe::NetParameter& net) {
  std::vector<CaffeConv> convs;
  for (const auto& layer : net.layer())
    if (layer.type() == "Convolution") add_conv(convs, layer.name(), layer.blobs());
  for (const auto& layer : net.layers()) {
    if (layer.has_layer()) {  // V0 inside V1
      if (layer.layer().type() == "conv") add_conv(convs, layer.layer().name(), layer.layer().blobs());
    } else if (layer.type() == v1_convolution_type) {
      add_conv(convs, layer.name(), layer.blobs());
    }
  }
  return convs;
}

// The architecture whose first k convolutions the file holds, for the largest
// k, among those that have no name conflict (a conv name that belongs to
// another architecture but not this one).
std::string infer_architecture(const std::set<std::string>& names, std::vector<std::string>& notes) {
  std::set<std::string> known;
  for (const auto& candidate : architecture_names())
    for (const LayerSpec* conv : architecture(candidate).convolutions()) known.insert(conv->name);
  std::string best;
  std::size_t best_count = 0;
  std::string tie;
  for (const char* candidate : {"vgg19", "vgg16", "nin"}) {
    auto convs = architecture(candidate).convolutions();
    std::set<std::string> own;
    for (const LayerSpec* conv : convs) own.insert(conv->name);
    bool conflict = false;
    for (const auto& name : names)
      if (known.count(name) && !own.count(name)) conflict = true;
    if (conflict) continue;
    std::size_t count = 0;
    while (count < convs.size() && names.count(convs[count]->name)) ++count;
    if (count > best_count) {
      best = candidate;
      best_count = count;
      tie.clear();
    } else if (count == best_count && count > 0 && tie.empty()) {
      tie = candidate;
    }
  }
  if (best.empty()) {
    std::ostringstream list;
    std::size_t shown = 0;
    for (const auto& name : names) list << (shown++ ? ", " : "") << name;
    fail("the convolutions in the file (", list.str(), ") match no known model; pass the model name");
  }
  if (!tie.empty())
    notes.push_back("the convolutions also fit " + tie + "; chose " + best + " (pass the model name to choose)");
  return best;
}

}  // namespace

ImportResult import_caffemodel(const std::filesystem::path& path, const ImportOptions& options) {
  const std::string name = path.filename().string();
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("cannot open '", path.string(), "': ", std::strerror(errno));
  tessera::caffe::NetParameter net;
  {
    google::protobuf::io::FileInputStream raw(fd);
    raw.SetCloseOnDelete(true);
    google::protobuf::io::CodedInputStream coded(&raw);
    // The default limit (64 MiB in older protobufs) is far below VGG's 548 MB.
    coded.SetTotalBytesLimit(INT_MAX);
    bool parsed = net.ParseFromCodedStream(&coded);
    if (raw.GetErrno() != 0) fail(name, ": read error: ", std::strerror(raw.GetErrno()));
    if (!parsed)
      fail(name, ": cannot parse the file as a Caffe model (protobuf NetParameter): it is truncated, corrupt, "
           "or not a .caffemodel");
  }

  std::vector<std::string> notes;
  auto found = find_convolutions(net);
  if (found.empty())
    fail(name, ": no convolution layers in the file; is it a .caffemodel (a .prototxt holds no weights)?");
  std::map<std::string, const CaffeConv*> by_name;
  std::set<std::string> names;
  for (const auto& conv : found) {
    by_name[conv.name] = &conv;
    names.insert(conv.name);
  }

  std::string arch_name = options.architecture;
  if (arch_name.empty()) arch_name = infer_architecture(names, notes);
  const Architecture& arch = architecture(arch_name);

  ImportResult result;
  WeightSet& weights = result.weights;
  weights.architecture = arch_name;
  weights.input = ColorTransform::caffe();
  weights.provenance["input_convention"] = "caffe";
  for (const LayerSpec* layer : arch.convolutions()) {
    auto it = by_name.find(layer->name);
    if (it == by_name.end()) break;  // the file covers a prefix
    const CaffeConv& conv = *it->second;
    const std::string what = name + ": layer " + conv.name;
    if (!conv.weight || !conv.bias)
      fail(what, " has ", conv.blob_count, " blobs; a convolution needs a weight and a bias");
    auto shape = blob_shape(*conv.weight);
    std::vector<std::int64_t> wanted = {layer->out_channels, layer->in_channels, layer->kernel, layer->kernel};
    if (!conv_shape_matches(*layer, shape)) {
      // Some early files store a convolution's weights with a flattened 4-D
      // legacy shape (1x1xOx(I*k*k)); like neural-style's loader, read those
      // by count. A BlobShape, or a different count, is a real mismatch.
      bool flattened_legacy = !conv.weight->has_shape() &&
                              checked_count(shape, what + " weight") == checked_count(wanted, what + " weight");
      if (!flattened_legacy)
        fail(what, " has weights shaped ", shape_string(shape), ", but ", arch_name, "'s ", layer->name, " needs ",
             shape_string(wanted));
      notes.push_back("layer " + conv.name + " stores its weights as " + shape_string(shape) + "; read as " +
                      shape_string(wanted));
      shape = wanted;
    }
    auto bias_shape = blob_shape(*conv.bias);
    std::int64_t bias_count = checked_count(bias_shape, what + " bias");
    if (bias_count != layer->out_channels)
      fail(what, " has ", bias_count, " biases (shape ", shape_string(bias_shape), "), expected ",
           layer->out_channels);
    ConvWeights out;
    out.name = layer->name;
    out.out_channels = layer->out_channels;
    out.in_channels = layer->in_channels;
    out.kernel_h = out.kernel_w = layer->kernel;
    out.weight = blob_values(*conv.weight, checked_count(shape, what + " weight"), what + " weight");
    out.bias = blob_values(*conv.bias, bias_count, what + " bias");
    weights.convs.push_back(std::move(out));
  }
  if (weights.convs.empty())
    fail(name, ": the file has no '", arch.convolutions().front()->name, "' layer, the first convolution of ",
         arch_name);
  std::size_t used = weights.convs.size();
  if (found.size() > used) {
    std::ostringstream note;
    note << "ignored " << found.size() - used << " convolution layer" << (found.size() - used == 1 ? "" : "s")
         << " beyond " << weights.convs.back().name << " or not in " << arch_name << ":";
    std::size_t shown = 0;
    for (const auto& conv : found) {
      bool taken = false;
      for (const auto& w : weights.convs) taken = taken || w.name == conv.name;
      if (!taken && shown++ < 8) note << " " << conv.name;
    }
    notes.push_back(note.str());
  }
  notes.push_back("model " + arch_name + ", " + std::to_string(used) + " convolutions (" +
                  weights.convs.front().name + ".." + weights.convs.back().name + "), Caffe input convention");
  weights.provenance["source_format"] = "caffemodel";
  weights.provenance["key_layout"] = "caffe layer names";
  result.notes = std::move(notes);
  return result;
}

}  // namespace tessera::io::detail
