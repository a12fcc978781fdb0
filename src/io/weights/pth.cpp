// PyTorch .pth state_dicts, in both of torch.save's formats:
//
//  legacy (before PyTorch 1.6, or _use_new_zipfile_serialization=False): pickles
//    in a row -- magic number, protocol version 1001, sys_info, the state_dict
//    (tensors name storages through persistent ids), the list of storage keys --
//    then each storage in that list's order as an int64 element count followed by
//    the raw little-endian elements.
//  zip (PyTorch >= 1.6): <archive>/data.pkl holds the state_dict pickle and
//    <archive>/data/<key> each storage's raw little-endian bytes.
//
// Both pickles go through the restricted reader in pickle.hpp. Every storage
// range is checked against the bytes actually present before anything is
// copied, and only the tensors that become convolutions are read.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <unordered_map>

#include "importers.hpp"
#include "pickle.hpp"
#include "tessera/error.hpp"
#include "tessera/model.hpp"

static_assert(std::endian::native == std::endian::little,
              "the .pth reader copies little-endian storages as they are");

namespace tessera::io::detail {

// --- MappedFile

MappedFile::MappedFile(const std::filesystem::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("cannot open '", path.string(), "': ", std::strerror(errno));
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    int saved = errno;
    ::close(fd);
    fail("cannot stat '", path.string(), "': ", std::strerror(saved));
  }
  size_ = std::size_t(info.st_size);
  if (size_ > 0) {
    void* mapped = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (mapped == MAP_FAILED) {
      int saved = errno;
      ::close(fd);
      fail("cannot map '", path.string(), "' into memory: ", std::strerror(saved));
    }
    data_ = static_cast<const std::uint8_t*>(mapped);
  }
  ::close(fd);
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<std::uint8_t*>(data_), size_);
}

bool conv_shape_matches(const LayerSpec& layer, const std::vector<std::int64_t>& shape) {
  return shape.size() == 4 && shape[0] == layer.out_channels && shape[1] == layer.in_channels &&
         shape[2] == layer.kernel && shape[3] == layer.kernel;
}

std::string shape_string(const std::vector<std::int64_t>& shape) {
  if (shape.empty()) return "a scalar";
  std::ostringstream out;
  for (std::size_t i = 0; i < shape.size(); ++i) out << (i ? "x" : "") << shape[i];
  return out.str();
}

namespace {

using pickle::StorageRef;
using pickle::TensorRef;
using pickle::Value;

std::string layer_shape(const LayerSpec& layer) {
  return shape_string({layer.out_channels, layer.in_channels, layer.kernel, layer.kernel});
}

// A weight tensor is at most this many elements: VGG's largest convolution is
// 512x512x3x3 = 2.4M; anything near this limit is not a backbone conv.
constexpr std::int64_t max_tensor_elements = std::int64_t(1) << 31;

struct NamedTensor {
  std::string key;
  TensorRef ref;
};

// Where a storage's bytes come from: the mapped legacy file or a zip entry.
class StorageSource {
 public:
  virtual ~StorageSource() = default;
  // Copies elements [first, first + count) of `storage` (already checked to lie
  // within its declared size) into `out`.
  virtual void read_elements(const StorageRef& storage, std::int64_t first, std::int64_t count,
                             std::size_t element_bytes, std::uint8_t* out) = 0;
};

std::int64_t element_count(const NamedTensor& tensor) {
  std::int64_t count = 1;
  for (std::int64_t dim : tensor.ref.size) {
    if (dim < 0) fail("tensor '", tensor.key, "' has a negative size ", dim);
    if (dim > 0 && count > max_tensor_elements / dim)
      fail("tensor '", tensor.key, "' declares ", shape_string(tensor.ref.size),
           " elements, more than any weight tensor holds");
    count *= dim;
  }
  return count;
}

std::vector<float> tensor_values(const NamedTensor& tensor, StorageSource& source) {
  const TensorRef& ref = tensor.ref;
  if (ref.storage.type_name != "FloatStorage")
    fail("tensor '", tensor.key, "' is stored as torch.", ref.storage.type_name,
         "; only float32 weights (torch.FloatStorage) are supported -- convert with .float() and save again");
  std::int64_t count = element_count(tensor);
  if (count == 0) return {};
  // Row-major contiguity; dimensions of size 1 may carry any stride.
  std::int64_t expected = 1;
  for (std::size_t d = ref.size.size(); d-- > 0;) {
    if (ref.size[d] != 1 && ref.stride[d] != expected)
      fail("tensor '", tensor.key, "' is not contiguous (size ", shape_string(ref.size), ", stride ",
           shape_string(ref.stride), "); save it with .contiguous() first");
    expected *= ref.size[d];
  }
  // The elements must lie inside the (view of the) storage the pickle names.
  std::int64_t available = ref.storage.is_view ? ref.storage.view_numel : ref.storage.numel;
  if (ref.storage_offset < 0 || ref.storage_offset > available || count > available - ref.storage_offset)
    fail("tensor '", tensor.key, "' reads elements [", ref.storage_offset, ", ", ref.storage_offset, "+",
         count, ") of storage '", ref.storage.key, "', which holds ", available);
  std::int64_t first = ref.storage_offset + (ref.storage.is_view ? ref.storage.view_offset : 0);
  std::vector<float> values(static_cast<std::size_t>(count));
  if (count > 0)
    source.read_elements(ref.storage, first, count, sizeof(float),
                         reinterpret_cast<std::uint8_t*>(values.data()));
  return values;
}

// The state_dict: the root dict, or the dict under a conventional key when the
// file wraps it ({'state_dict': ...}, {'model': ...}).
std::vector<NamedTensor> collect_tensors(const Value& root, const std::string& what,
                                         std::vector<std::string>& notes) {
  if (root.kind != Value::Kind::dict)
    fail(what, ": the pickle holds a ", pickle::kind_name(root.kind), ", not a state_dict");
  const Value* dict = &root;
  bool has_tensor = std::any_of(root.entries.begin(), root.entries.end(),
                                [](const auto& e) { return e.second->kind == Value::Kind::tensor; });
  if (!has_tensor) {
    for (const char* wrapper : {"state_dict", "model", "params"}) {
      const Value* inner = root.find(wrapper);
      if (inner && inner->kind == Value::Kind::dict) {
        dict = inner;
        notes.push_back(std::string("reading the state_dict stored under '") + wrapper + "'");
        break;
      }
    }
  }
  std::vector<NamedTensor> tensors;
  std::size_t skipped = 0;
  for (const auto& [key, value] : dict->entries) {
    if (key->kind != Value::Kind::string || value->kind != Value::Kind::tensor) {
      ++skipped;
      continue;
    }
    tensors.push_back({key->text, value->tensor});
  }
  if (tensors.empty()) fail(what, ": the state_dict holds no tensors");
  if (skipped) notes.push_back("ignored " + std::to_string(skipped) + " state_dict entries that are not tensors");
  return tensors;
}

// ---------------------------------------------------------------------------
// Key layouts: which state_dict prefix becomes which tessera convolution.

struct Plan {
  std::string architecture;
  std::string layout;                       // recorded as provenance key_layout
  std::optional<std::string> input_prefix;  // 3x3x1x1 colour conv folded into the input
  std::vector<std::pair<const LayerSpec*, std::string>> convs;  // network order
  std::vector<std::string> notes;
};

class TensorIndex {
 public:
  explicit TensorIndex(const std::vector<NamedTensor>& tensors) {
    for (const auto& tensor : tensors) by_key_.emplace(tensor.key, &tensor);
  }
  const NamedTensor* find(const std::string& key) const {
    auto it = by_key_.find(key);
    return it == by_key_.end() ? nullptr : it->second;
  }

 private:
  std::unordered_map<std::string, const NamedTensor*> by_key_;
};

// Parses "<prefix><digits>.weight" and returns the number, or -1.
long numbered_weight(std::string_view key, std::string_view prefix) {
  constexpr std::string_view suffix = ".weight";
  if (!key.starts_with(prefix) || !key.ends_with(suffix) || key.size() <= prefix.size() + suffix.size())
    return -1;
  std::string_view digits = key.substr(prefix.size(), key.size() - prefix.size() - suffix.size());
  long number = -1;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), number);
  if (ec != std::errc() || end != digits.data() + digits.size()) return -1;
  return number;
}

// Module indices of the convolutions in each backbone's `features`
// nn.Sequential (conv, relu and pool each take an index): torchvision's
// vgg19/vgg16, and neural-style-pt's NIN, whose Sequential has a Dropout
// before conv4-1024.
const std::vector<long>& torch_feature_indices(const std::string& architecture) {
  static const std::map<std::string, std::vector<long>> indices = {
      {"vgg19", {0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34}},
      {"vgg16", {0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28}},
      {"nin", {0, 2, 4, 7, 9, 11, 14, 16, 18, 22, 24, 26}},
  };
  auto it = indices.find(architecture);
  if (it == indices.end()) fail("no torchvision key layout is known for model '", architecture, "'");
  return it->second;
}

std::vector<std::string> candidate_architectures(const ImportOptions& options) {
  if (!options.architecture.empty()) {
    architecture(options.architecture);  // throws for an unknown name
    return {options.architecture};
  }
  return {"vgg19", "vgg16", "nin"};
}

// torchvision layout: features.<N>.weight. Returns nullopt when the file has
// no such keys; throws when it has them but they fit no candidate.
std::optional<Plan> plan_torchvision(const std::vector<NamedTensor>& tensors, const ImportOptions& options) {
  std::vector<std::pair<long, const NamedTensor*>> found;
  for (const auto& tensor : tensors) {
    long index = numbered_weight(tensor.key, "features.");
    if (index >= 0 && tensor.ref.size.size() == 4) found.emplace_back(index, &tensor);
  }
  if (found.empty()) return std::nullopt;
  std::sort(found.begin(), found.end());

  std::vector<Plan> fits;
  std::string first_problem;
  for (const auto& name : candidate_architectures(options)) {
    const Architecture& arch = architecture(name);
    const auto& indices = torch_feature_indices(name);
    auto convs = arch.convolutions();
    std::string problem;
    if (found.size() > indices.size()) {
      problem = "the file has " + std::to_string(found.size()) + " feature convolutions, " + name + " has " +
                std::to_string(indices.size());
    } else {
      for (std::size_t i = 0; i < found.size() && problem.empty(); ++i) {
        const auto& [index, tensor] = found[i];
        if (index != indices[i])
          problem = "'" + tensor->key + "' is not where " + name + "'s convolution " + std::to_string(i + 1) +
                    " (" + convs[i]->name + ", features." + std::to_string(indices[i]) + ") belongs";
        else if (!conv_shape_matches(*convs[i], tensor->ref.size))
          problem = "'" + tensor->key + "' has shape " + shape_string(tensor->ref.size) + ", but " + name +
                    "'s " + convs[i]->name + " needs " + layer_shape(*convs[i]);
      }
    }
    if (!problem.empty()) {
      if (first_problem.empty()) first_problem = problem;
      continue;
    }
    Plan plan;
    plan.architecture = name;
    plan.layout = "torchvision features.N";
    for (std::size_t i = 0; i < found.size(); ++i)
      plan.convs.emplace_back(convs[i], "features." + std::to_string(found[i].first));
    fits.push_back(std::move(plan));
  }
  if (fits.empty())
    fail("the file uses torchvision's 'features.N' keys but fits no model: ", first_problem,
         options.architecture.empty() ? "" : " (model given with --arch)");
  Plan chosen = std::move(fits.front());
  if (fits.size() > 1)
    chosen.notes.push_back("the convolutions also fit " + fits[1].architecture + "; chose " +
                           chosen.architecture + " (pass the model name to choose)");
  return chosen;
}

// The normalised-VGG encoder layout (LinearStyleTransfer's vgg_r31.pth and its
// siblings): conv1 is a 3x3x1x1 colour convolution, conv2.. are VGG-19's
// convolutions in order.
std::optional<Plan> plan_normalised_vgg(const std::vector<NamedTensor>& tensors, const TensorIndex& index,
                                        const ImportOptions& options) {
  const NamedTensor* colour = index.find("conv1.weight");
  if (!colour || colour->ref.size != std::vector<std::int64_t>{3, 3, 1, 1}) return std::nullopt;
  std::vector<long> numbers;
  for (const auto& tensor : tensors) {
    long number = numbered_weight(tensor.key, "conv");
    if (number >= 0) numbers.push_back(number);
  }
  std::sort(numbers.begin(), numbers.end());
  for (std::size_t i = 0; i < numbers.size(); ++i)
    if (numbers[i] != long(i + 1))
      fail("the file looks like a normalised VGG encoder (conv1 is a 3x3x1x1 colour convolution), but its "
           "convolutions are not numbered conv1..conv", numbers.size(), " (conv", i + 1, " is missing)");
  if (numbers.size() < 2) fail("the file holds only a colour convolution (conv1), no backbone convolution");
  std::string name = options.architecture.empty() ? "vgg19" : options.architecture;
  if (name == "nin") fail("a normalised VGG encoder file cannot be imported as nin");
  const Architecture& arch = architecture(name);
  auto convs = arch.convolutions();
  if (numbers.size() - 1 > convs.size())
    fail("the file has ", numbers.size() - 1, " convolutions after its colour convolution; ", name, " has ",
         convs.size());
  Plan plan;
  plan.architecture = name;
  plan.layout = "normalised VGG encoder conv1..convN";
  plan.input_prefix = "conv1";
  for (std::size_t i = 1; i < numbers.size(); ++i)
    plan.convs.emplace_back(convs[i - 1], "conv" + std::to_string(i + 1));
  plan.notes.push_back("normalised VGG encoder layout: conv1 is folded into the input colour transform, conv2.." +
                       std::string("conv") + std::to_string(numbers.size()) + " are " + name + "'s " +
                       convs[0]->name + ".." + convs[numbers.size() - 2]->name);
  return plan;
}

Plan plan_from_key_map(const TensorIndex& index, const ImportOptions& options) {
  Plan plan;
  plan.layout = "key map";
  std::vector<std::pair<std::string, std::string>> targets;  // conv name -> prefix
  for (const auto& [prefix, target] : options.key_map) {
    if (!index.find(prefix + ".weight"))
      fail("the key map names '", prefix, "', but the file has no '", prefix, ".weight'");
    if (target == "input") {
      if (plan.input_prefix) fail("the key map names two input colour convolutions");
      plan.input_prefix = prefix;
    } else {
      targets.emplace_back(target, prefix);
    }
  }
  if (targets.empty()) fail("the key map names no convolution (only 'input')");

  std::string first_problem;
  for (const auto& name : candidate_architectures(options)) {
    const Architecture& arch = architecture(name);
    std::vector<std::pair<const LayerSpec*, std::string>> convs;
    std::string problem;
    for (const auto& [target, prefix] : targets) {
      int position = arch.index_of(target);
      if (position < 0 || arch.layers[std::size_t(position)].kind != LayerKind::conv) {
        problem = name + " has no convolution '" + target + "'";
        break;
      }
      const LayerSpec& layer = arch.layers[std::size_t(position)];
      const auto& shape = index.find(prefix + ".weight")->ref.size;
      if (!conv_shape_matches(layer, shape)) {
        problem = "'" + prefix + ".weight' has shape " + shape_string(shape) + ", but " + name + "'s " + target +
                  " needs " + layer_shape(layer);
        break;
      }
      convs.emplace_back(&layer, prefix);
    }
    if (!problem.empty()) {
      if (first_problem.empty()) first_problem = problem;
      continue;
    }
    std::sort(convs.begin(), convs.end(), [&](const auto& a, const auto& b) {
      return arch.index_of(a.first->name) < arch.index_of(b.first->name);
    });
    plan.architecture = name;
    plan.convs = std::move(convs);
    return plan;
  }
  fail("the key map fits no model: ", first_problem);
}

Plan make_plan(const std::vector<NamedTensor>& tensors, const ImportOptions& options) {
  TensorIndex index(tensors);
  if (!options.key_map.empty()) return plan_from_key_map(index, options);
  if (auto plan = plan_torchvision(tensors, options)) return std::move(*plan);
  if (auto plan = plan_normalised_vgg(tensors, index, options)) return std::move(*plan);
  std::ostringstream keys;
  for (std::size_t i = 0; i < tensors.size() && i < 6; ++i) keys << (i ? ", " : "") << tensors[i].key;
  if (tensors.size() > 6) keys << ", ...";
  fail("cannot tell which layers the keys belong to (", keys.str(),
       "); pass a key map such as --map conv2=conv1_1,conv3=conv1_2");
}

ColorTransform colour_conv_transform(const NamedTensor& weight, const NamedTensor& bias, StorageSource& source) {
  if (weight.ref.size != std::vector<std::int64_t>{3, 3, 1, 1})
    fail("the input colour convolution '", weight.key, "' has shape ", shape_string(weight.ref.size),
         ", expected 3x3x1x1");
  if (bias.ref.size != std::vector<std::int64_t>{3})
    fail("the input colour convolution bias '", bias.key, "' has shape ", shape_string(bias.ref.size),
         ", expected 3");
  auto w = tensor_values(weight, source);
  auto b = tensor_values(bias, source);
  // output[o] = sum_i W[o][i][0][0] * input[i] + b[o]: exactly ColorTransform's form.
  ColorTransform transform;
  for (int o = 0; o < 3; ++o) {
    for (int i = 0; i < 3; ++i) transform.matrix[o][i] = w[std::size_t(o * 3 + i)];
    transform.bias[o] = b[std::size_t(o)];
  }
  return transform;
}

ImportResult build_weights(const std::vector<NamedTensor>& tensors, const ImportOptions& options,
                           StorageSource& source, const std::string& format, std::vector<std::string> notes) {
  Plan plan = make_plan(tensors, options);
  if (plan.convs.empty()) fail("no convolution of ", plan.architecture, " found in the file");
  TensorIndex index(tensors);
  auto require = [&](const std::string& key, const std::string& role) -> const NamedTensor& {
    const NamedTensor* tensor = index.find(key);
    if (!tensor) fail("the file has no '", key, "' (", role, ")");
    return *tensor;
  };

  ImportResult result;
  WeightSet& weights = result.weights;
  weights.architecture = plan.architecture;
  std::map<std::string, bool> used;
  for (const auto& [layer, prefix] : plan.convs) {
    const NamedTensor& weight = require(prefix + ".weight", "weight of " + layer->name);
    const NamedTensor& bias = require(prefix + ".bias", "bias of " + layer->name);
    if (!conv_shape_matches(*layer, weight.ref.size))
      fail("'", weight.key, "' has shape ", shape_string(weight.ref.size), ", but ", plan.architecture, "'s ",
           layer->name, " needs ", layer_shape(*layer));
    if (bias.ref.size != std::vector<std::int64_t>{layer->out_channels})
      fail("'", bias.key, "' has shape ", shape_string(bias.ref.size), ", but ", layer->name, " needs ",
           layer->out_channels, " biases");
    ConvWeights conv;
    conv.name = layer->name;
    conv.out_channels = layer->out_channels;
    conv.in_channels = layer->in_channels;
    conv.kernel_h = conv.kernel_w = layer->kernel;
    conv.weight = tensor_values(weight, source);
    conv.bias = tensor_values(bias, source);
    weights.convs.push_back(std::move(conv));
    used[weight.key] = used[bias.key] = true;
  }
  if (plan.input_prefix) {
    const NamedTensor& weight = require(*plan.input_prefix + ".weight", "input colour convolution");
    const NamedTensor& bias = require(*plan.input_prefix + ".bias", "input colour convolution bias");
    weights.input = colour_conv_transform(weight, bias, source);
    weights.provenance["input_convention"] = "folded from '" + *plan.input_prefix + "' (1x1 colour convolution)";
    used[weight.key] = used[bias.key] = true;
  } else {
    weights.input = ColorTransform::caffe();
    weights.provenance["input_convention"] = "caffe (default for this layout)";
    notes.push_back("input convention: Caffe (BGR, 0..255, ImageNet mean subtracted), as neural-style-pt's "
                    "converted VGG files expect; import torchvision's own weights with the torchvision input");
  }

  std::vector<std::string> ignored;
  for (const auto& tensor : tensors)
    if (!used.count(tensor.key)) ignored.push_back(tensor.key);
  if (!ignored.empty()) {
    std::ostringstream note;
    note << "ignored " << ignored.size() << " tensor" << (ignored.size() == 1 ? "" : "s")
         << " that are not backbone convolutions: ";
    for (std::size_t i = 0; i < ignored.size() && i < 8; ++i) note << (i ? ", " : "") << ignored[i];
    if (ignored.size() > 8) note << ", ...";
    notes.push_back(note.str());
  }
  notes.insert(notes.end(), plan.notes.begin(), plan.notes.end());
  notes.push_back("model " + plan.architecture + ", " + std::to_string(weights.convs.size()) + " convolutions (" +
                  weights.convs.front().name + ".." + weights.convs.back().name + ")");
  weights.provenance["source_format"] = format;
  weights.provenance["key_layout"] = plan.layout;
  if (plan.layout == "normalised VGG encoder conv1..convN") {
    // The normalised VGG-19's activations are about 100x smaller than the
    // original's, so Gram losses shrink about 1e4x: neural-style's style
    // weight of 100 barely moves the style (DESIGN.md section 7).
    // For the same reason the Caffe-scale total variation (1e-3 on a 0..255
    // image) would outweigh both and blur the render; the reference renders
    // of this file use none.
    weights.provenance["recommended_style_weight"] = "1e6";
    weights.provenance["recommended_tv_weight"] = "0";
    notes.push_back("normalised VGG: renders default to style weight 1e6 and TV weight 0 (activations ~100x "
                    "smaller than VGG's)");
  }
  result.notes = std::move(notes);
  return result;
}

// ---------------------------------------------------------------------------
// Legacy format

class LegacyStorages final : public StorageSource {
 public:
  struct Extent {
    std::size_t data_offset = 0;  // first element's byte offset in the file
    std::int64_t numel = 0;
    std::size_t element_bytes = 0;
  };

  LegacyStorages(std::span<const std::uint8_t> file, std::string what) : file_(file), what_(std::move(what)) {}

  void add(const std::string& key, Extent extent) { extents_[key] = extent; }

  void read_elements(const StorageRef& storage, std::int64_t first, std::int64_t count, std::size_t element_bytes,
                     std::uint8_t* out) override {
    auto it = extents_.find(storage.key);
    if (it == extents_.end()) fail(what_, ": storage '", storage.key, "' is not in the file's storage list");
    const Extent& extent = it->second;
    if (extent.element_bytes != element_bytes || first < 0 || count < 0 || first > extent.numel ||
        count > extent.numel - first)
      fail(what_, ": read outside storage '", storage.key, "'");
    std::memcpy(out, file_.data() + extent.data_offset + std::size_t(first) * element_bytes,
                std::size_t(count) * element_bytes);
  }

 private:
  std::span<const std::uint8_t> file_;
  std::string what_;
  std::map<std::string, Extent> extents_;
};

// The magic number torch.save writes first, as LONG1's little-endian bytes:
// 0x1950a86a20f9469cfc6c.
constexpr std::uint8_t legacy_magic[] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
constexpr std::int64_t legacy_protocol_version = 1001;

}  // namespace

ImportResult import_pth_legacy(const std::filesystem::path& path, const ImportOptions& options) {
  const std::string name = path.filename().string();
  MappedFile mapped(path);
  auto file = mapped.bytes();
  std::size_t position = 0;
  int pickle_number = 0;
  auto next_pickle = [&]() {
    std::string what = name + ", pickle " + std::to_string(pickle_number++);
    pickle::Document document = pickle::parse(file.subspan(position), what);
    position += document.end_offset();
    return document;
  };

  pickle::Document magic = next_pickle();
  if (magic.root().kind != Value::Kind::big_integer ||
      magic.root().text != std::string(std::begin(legacy_magic), std::end(legacy_magic)))
    fail(name, ": not a legacy PyTorch file (its first pickle is not torch.save's magic number)");
  pickle::Document protocol = next_pickle();
  if (protocol.root().kind != Value::Kind::integer || protocol.root().integer != legacy_protocol_version)
    fail(name, ": unsupported legacy PyTorch protocol (expected ", legacy_protocol_version, ")");
  pickle::Document sys_info = next_pickle();
  if (sys_info.root().kind == Value::Kind::dict) {
    const Value* little = sys_info.root().find("little_endian");
    if (little && little->kind == Value::Kind::boolean && !little->boolean)
      fail(name, ": the file was written on a big-endian machine; only little-endian files are supported");
  }
  pickle::Document state = next_pickle();
  pickle::Document keys = next_pickle();
  if (keys.root().kind != Value::Kind::list)
    fail(name, ": the storage key list is a ", pickle::kind_name(keys.root().kind), ", not a list");

  // Storage types by key, from every persistent id in the state_dict pickle.
  std::map<std::string, const StorageRef*> declared;
  for (const Value* storage : state.storages()) {
    auto [it, inserted] = declared.emplace(storage->storage.key, &storage->storage);
    if (!inserted && (it->second->type_name != storage->storage.type_name ||
                      it->second->numel != storage->storage.numel))
      fail(name, ": storage '", storage->storage.key, "' is declared twice with different types or sizes");
  }

  // The raw storages follow, in the key list's order: int64 count, then data.
  LegacyStorages storages(file, name);
  std::set<std::string> listed;
  for (const Value* key_value : keys.root().items) {
    if (key_value->kind != Value::Kind::string) fail(name, ": the storage key list holds a non-string");
    const std::string& key = key_value->text;
    if (!listed.insert(key).second) fail(name, ": storage '", key, "' is listed twice");
    auto it = declared.find(key);
    if (it == declared.end()) fail(name, ": storage '", key, "' is listed but no tensor uses it");
    const StorageRef& storage = *it->second;
    std::size_t element_bytes = pickle::storage_element_bytes(storage.type_name);
    if (file.size() - position < 8)
      fail(name, ": truncated: storage '", key, "' should start at byte ", position, " but the file has ",
           file.size(), " bytes");
    std::int64_t count = 0;
    std::memcpy(&count, file.data() + position, 8);
    position += 8;
    if (count != storage.numel)
      fail(name, ": storage '", key, "' holds ", count, " elements in the file, but the pickle declares ",
           storage.numel);
    std::size_t remaining = file.size() - position;
    if (count < 0 || std::uint64_t(count) > remaining / element_bytes)
      fail(name, ": truncated: storage '", key, "' declares ", count, " elements (", storage.type_name,
           ") at byte ", position, ", past the end of the file (", file.size(), " bytes)");
    storages.add(key, {position, count, element_bytes});
    position += std::size_t(count) * element_bytes;
  }

  std::vector<std::string> notes;
  auto tensors = collect_tensors(state.root(), name, notes);
  for (const auto& tensor : tensors)
    if (!listed.count(tensor.ref.storage.key))
      fail(name, ": tensor '", tensor.key, "' names storage '", tensor.ref.storage.key,
           "', which is not in the file's storage list");
  return build_weights(tensors, options, storages, "pytorch-legacy", std::move(notes));
}

// ---------------------------------------------------------------------------
// Zip format

namespace {

// One checked libzip archive handle.
class ZipArchive {
 public:
  ZipArchive(const std::filesystem::path& path, std::string name) : name_(std::move(name)) {
    int code = 0;
    archive_ = zip_open(path.c_str(), ZIP_RDONLY | ZIP_CHECKCONS, &code);
    if (!archive_) {
      zip_error_t error;
      zip_error_init_with_code(&error, code);
      std::string message = zip_error_strerror(&error);
      zip_error_fini(&error);
      fail(name_, ": zip_open failed: ", message);
    }
  }
  ~ZipArchive() {
    if (archive_) zip_discard(archive_);  // read-only: nothing to write back
  }
  ZipArchive(const ZipArchive&) = delete;
  ZipArchive& operator=(const ZipArchive&) = delete;

  std::vector<std::string> names() {
    zip_int64_t count = zip_get_num_entries(archive_, 0);
    if (count < 0) fail(name_, ": zip_get_num_entries failed: ", zip_strerror(archive_));
    std::vector<std::string> out;
    for (zip_int64_t i = 0; i < count; ++i) {
      const char* entry = zip_get_name(archive_, zip_uint64_t(i), ZIP_FL_ENC_RAW);
      if (!entry) fail(name_, ": zip_get_name failed for entry ", i, ": ", zip_strerror(archive_));
      out.emplace_back(entry);
    }
    return out;
  }

  // Index of the entry, or -1.
  zip_int64_t locate(const std::string& entry) { return zip_name_locate(archive_, entry.c_str(), ZIP_FL_ENC_RAW); }

  std::uint64_t size_of(zip_int64_t index, const std::string& entry) {
    zip_stat_t stat;
    zip_stat_init(&stat);
    if (zip_stat_index(archive_, zip_uint64_t(index), 0, &stat) != 0)
      fail(name_, ": zip_stat_index failed for '", entry, "': ", zip_strerror(archive_));
    if (!(stat.valid & ZIP_STAT_SIZE)) fail(name_, ": the archive does not record the size of '", entry, "'");
    return stat.size;
  }

  // Reads bytes [first, first + count) of an entry, decompressing as needed and
  // discarding what comes before `first` (libzip cannot seek in compressed data).
  void read(zip_int64_t index, const std::string& entry, std::uint64_t first, std::uint64_t count,
            std::uint8_t* out) {
    zip_file_t* file = zip_fopen_index(archive_, zip_uint64_t(index), 0);
    if (!file) fail(name_, ": zip_fopen_index failed for '", entry, "': ", zip_strerror(archive_));
    std::unique_ptr<zip_file_t, int (*)(zip_file_t*)> closer(file, zip_fclose);
    std::vector<std::uint8_t> scratch;
    while (first > 0) {
      scratch.resize(std::size_t(std::min<std::uint64_t>(first, 1 << 20)));
      read_exactly(file, entry, scratch.data(), scratch.size());
      first -= scratch.size();
    }
    read_exactly(file, entry, out, count);
    zip_file_t* released = closer.release();
    if (zip_fclose(released) != 0) fail(name_, ": zip_fclose failed for '", entry, "' (corrupt data?)");
  }

 private:
  void read_exactly(zip_file_t* file, const std::string& entry, std::uint8_t* out, std::uint64_t count) {
    while (count > 0) {
      zip_int64_t got = zip_fread(file, out, count);
      if (got < 0) fail(name_, ": zip_fread failed for '", entry, "': ", zip_file_strerror(file));
      if (got == 0) fail(name_, ": '", entry, "' ends early (truncated archive)");
      out += got;
      count -= std::uint64_t(got);
    }
  }

  std::string name_;
  zip_t* archive_ = nullptr;
};

class ZipStorages final : public StorageSource {
 public:
  ZipStorages(ZipArchive& archive, std::string prefix, std::string name)
      : archive_(archive), prefix_(std::move(prefix)), name_(std::move(name)) {}

  void read_elements(const StorageRef& storage, std::int64_t first, std::int64_t count, std::size_t element_bytes,
                     std::uint8_t* out) override {
    std::string entry = prefix_ + "/data/" + storage.key;
    zip_int64_t index = archive_.locate(entry);
    if (index < 0) fail(name_, ": storage '", entry, "' is missing from the archive");
    std::uint64_t size = archive_.size_of(index, entry);
    // The entry must hold exactly the declared storage: this also refuses a
    // huge declared numel before anything is allocated for it.
    if (storage.numel > std::numeric_limits<std::int64_t>::max() / 16 ||
        size != std::uint64_t(storage.numel) * element_bytes)
      fail(name_, ": archive entry '", entry, "' holds ", size, " bytes, but the pickle declares ", storage.numel,
           " elements of ", element_bytes, " bytes");
    archive_.read(index, entry, std::uint64_t(first) * element_bytes, std::uint64_t(count) * element_bytes, out);
  }

 private:
  ZipArchive& archive_;
  std::string prefix_;
  std::string name_;
};

// data.pkl of a state_dict is a few kilobytes; this bounds the allocation.
constexpr std::uint64_t max_pickle_bytes = std::uint64_t(256) << 20;

}  // namespace

ImportResult import_pth_zip(const std::filesystem::path& path, const ImportOptions& options) {
  const std::string name = path.filename().string();
  ZipArchive archive(path, name);
  // <archive>/data.pkl: the archive folder is named after the file when saved,
  // so find it rather than guess it.
  std::string prefix;
  for (const auto& entry : archive.names()) {
    constexpr std::string_view suffix = "/data.pkl";
    if (entry.size() > suffix.size() && entry.ends_with(suffix) &&
        entry.find('/') == entry.size() - suffix.size()) {
      if (!prefix.empty()) fail(name, ": the archive holds more than one data.pkl");
      prefix = entry.substr(0, entry.size() - suffix.size());
    }
  }
  if (prefix.empty()) fail(name, ": a zip file without <archive>/data.pkl is not a PyTorch file");

  if (zip_int64_t order = archive.locate(prefix + "/byteorder"); order >= 0) {
    std::uint64_t size = archive.size_of(order, prefix + "/byteorder");
    if (size > 16) fail(name, ": unexpected byteorder record");
    std::string text(std::size_t(size), '\0');
    archive.read(order, prefix + "/byteorder", 0, size, reinterpret_cast<std::uint8_t*>(text.data()));
    if (text != "little") fail(name, ": the file's byte order is '", text, "'; only little-endian is supported");
  }

  std::string pickle_entry = prefix + "/data.pkl";
  zip_int64_t pickle_index = archive.locate(pickle_entry);
  std::uint64_t pickle_size = archive.size_of(pickle_index, pickle_entry);
  if (pickle_size > max_pickle_bytes)
    fail(name, ": data.pkl declares ", pickle_size, " bytes; a state_dict pickle is far smaller");
  std::vector<std::uint8_t> pickle_bytes(static_cast<std::size_t>(pickle_size));
  archive.read(pickle_index, pickle_entry, 0, pickle_size, pickle_bytes.data());
  pickle::Document state = pickle::parse(pickle_bytes, name + ", data.pkl");

  std::vector<std::string> notes;
  auto tensors = collect_tensors(state.root(), name, notes);
  ZipStorages storages(archive, prefix, name);
  return build_weights(tensors, options, storages, "pytorch-zip", std::move(notes));
}

}  // namespace tessera::io::detail
