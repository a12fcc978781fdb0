// Importing .pth (zip and legacy) and .caffemodel files: the committed
// fixtures from tests/fixtures/make_weight_fixtures.py, broken and malicious
// variants written here at run time, and the real vgg_r31.pth when present.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "io/weights/importers.hpp"
#include "support/test_support.hpp"
#include "tessera/error.hpp"
#include "tessera/io/image_io.hpp"
#include "tessera/io/import.hpp"
#include "tessera/io/weights_file.hpp"
#include "tessera/model.hpp"

namespace {

namespace fs = std::filesystem;
using tessera::ColorTransform;
using tessera::WeightSet;
using tessera::io::import_weights;
using tessera::io::ImportOptions;
using tessera::testing::uniform_vector;

using Bytes = std::vector<std::uint8_t>;

fs::path fixture(const std::string& name) { return tessera::testing::fixture_dir() / "weights" / name; }

Bytes read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

fs::path write_bytes(const fs::path& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  return path;
}

// The message of the tessera::Error that importing `path` raises.
std::string import_error(const fs::path& path, const ImportOptions& options = {}) {
  try {
    import_weights(path, options);
  } catch (const tessera::Error& error) {
    return error.what();
  } catch (const std::exception& error) {
    return std::string("NOT A tessera::Error: ") + error.what();
  }
  return "(no error)";
}

#define EXPECT_IMPORT_ERROR(path, options, fragment)                          \
  do {                                                                        \
    std::string message_ = import_error(path, options);                       \
    EXPECT_NE(message_.find(fragment), std::string::npos) << message_;        \
  } while (0)

void expect_caffe_input(const ColorTransform& input) {
  ColorTransform caffe = ColorTransform::caffe();
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 3; ++c) EXPECT_FLOAT_EQ(input.matrix[r][c], caffe.matrix[r][c]) << r << "," << c;
    EXPECT_FLOAT_EQ(input.bias[r], caffe.bias[r]);
  }
}

bool has_note(const std::vector<std::string>& notes, const std::string& fragment) {
  for (const auto& note : notes)
    if (note.find(fragment) != std::string::npos) return true;
  return false;
}

// The two VGG-19 prefix fixtures hold the same values.
void expect_vgg19_prefix(const tessera::io::ImportResult& result, const std::string& format) {
  const WeightSet& weights = result.weights;
  EXPECT_EQ(weights.architecture, "vgg19");
  ASSERT_EQ(weights.convs.size(), 2u);
  EXPECT_EQ(weights.convs[0].name, "conv1_1");
  EXPECT_EQ(weights.convs[1].name, "conv1_2");
  EXPECT_EQ(weights.convs[0].in_channels, 3);
  EXPECT_EQ(weights.convs[1].in_channels, 64);
  EXPECT_EQ(weights.convs[0].weight, uniform_vector(1, 64 * 3 * 3 * 3, -1, 1));
  EXPECT_EQ(weights.convs[0].bias, uniform_vector(2, 64, -1, 1));
  EXPECT_EQ(weights.convs[1].weight, uniform_vector(3, 64 * 64 * 3 * 3, -1, 1));
  EXPECT_EQ(weights.convs[1].bias, uniform_vector(4, 64, -1, 1));
  expect_caffe_input(weights.input);
  EXPECT_EQ(weights.provenance.at("source_format"), format);
  EXPECT_EQ(weights.provenance.at("key_layout"), "torchvision features.N");
  EXPECT_EQ(weights.provenance.at("source_sha256").size(), 64u);
  EXPECT_TRUE(has_note(result.notes, "ignored 2 tensors")) << "classifier.* should be ignored";
  EXPECT_TRUE(has_note(result.notes, "also fit vgg16"));
}

TEST(Import, TorchvisionKeysZip) {
  auto result = import_weights(fixture("vgg19_prefix_zip.pth"));
  expect_vgg19_prefix(result, "pytorch-zip");
}

TEST(Import, TorchvisionKeysLegacy) {
  auto result = import_weights(fixture("vgg19_prefix_legacy.pth"));
  expect_vgg19_prefix(result, "pytorch-legacy");
}

TEST(Import, ArchitectureCanBeGiven) {
  ImportOptions options;
  options.architecture = "vgg16";
  auto result = import_weights(fixture("vgg19_prefix_zip.pth"), options);
  EXPECT_EQ(result.weights.architecture, "vgg16");
  EXPECT_EQ(result.weights.convs.size(), 2u);

  options.architecture = "nin";
  EXPECT_IMPORT_ERROR(fixture("vgg19_prefix_zip.pth"), options, "fits no model");
  options.architecture = "resnet50";
  EXPECT_IMPORT_ERROR(fixture("vgg19_prefix_zip.pth"), options, "unknown model 'resnet50'");
}

TEST(Import, InputTransformCanBeGiven) {
  ImportOptions options;
  options.input = ColorTransform::torchvision();
  auto result = import_weights(fixture("vgg19_prefix_legacy.pth"), options);
  EXPECT_FLOAT_EQ(result.weights.input.bias[0], ColorTransform::torchvision().bias[0]);
  EXPECT_EQ(result.weights.provenance.at("input_convention"), "given by the user");
}

TEST(Import, NormalisedEncoderFoldsTheColourConvolution) {
  auto result = import_weights(fixture("normalised_legacy.pth"));
  const WeightSet& weights = result.weights;
  EXPECT_EQ(weights.architecture, "vgg19");
  ASSERT_EQ(weights.convs.size(), 1u);
  EXPECT_EQ(weights.convs[0].name, "conv1_1");
  EXPECT_EQ(weights.convs[0].weight, uniform_vector(7, 64 * 27, -1, 1));
  EXPECT_EQ(weights.convs[0].bias, uniform_vector(8, 64, -1, 1));
  expect_caffe_input(weights.input);  // the fixture's colour conv is Caffe's convention
  EXPECT_EQ(weights.provenance.at("key_layout"), "normalised VGG encoder conv1..convN");
}

TEST(Import, KeyMap) {
  ImportOptions options;
  options.key_map = ImportOptions::parse_map(" features.2 = conv1_2 , features.0=conv1_1");
  ASSERT_EQ(options.key_map.size(), 2u);
  EXPECT_EQ(options.key_map[0].first, "features.2");
  EXPECT_EQ(options.key_map[0].second, "conv1_2");
  auto result = import_weights(fixture("vgg19_prefix_zip.pth"), options);
  ASSERT_EQ(result.weights.convs.size(), 2u);
  EXPECT_EQ(result.weights.convs[0].name, "conv1_1");  // network order, not map order
  EXPECT_EQ(result.weights.convs[1].weight, uniform_vector(3, 64 * 64 * 9, -1, 1));

  options.key_map = ImportOptions::parse_map("features.2=conv1_1");
  EXPECT_IMPORT_ERROR(fixture("vgg19_prefix_zip.pth"), options, "needs 64x3x3x3");
  options.key_map = ImportOptions::parse_map("features.9=conv1_1");
  EXPECT_IMPORT_ERROR(fixture("vgg19_prefix_zip.pth"), options, "no 'features.9.weight'");
  options.key_map = ImportOptions::parse_map("conv1=input,conv2=conv1_1");
  auto folded = import_weights(fixture("normalised_legacy.pth"), options);
  expect_caffe_input(folded.weights.input);

  EXPECT_THROW(ImportOptions::parse_map("a=b,c"), tessera::Error);
  EXPECT_THROW(ImportOptions::parse_map("a=b,a=c"), tessera::Error);
  EXPECT_THROW(ImportOptions::parse_map("=b"), tessera::Error);
  EXPECT_TRUE(ImportOptions::parse_map("").empty());
}

TEST(Import, RefusesTensorsItCannotUseAsIs) {
  EXPECT_IMPORT_ERROR(fixture("noncontiguous_zip.pth"), ImportOptions{}, "is not contiguous");
  EXPECT_IMPORT_ERROR(fixture("half_zip.pth"), ImportOptions{}, "only float32 weights");
}

// ---------------------------------------------------------------------------
// Legacy .pth files written here, to break them in controlled ways.

struct PickleBytes {
  Bytes bytes;
  PickleBytes& op(std::uint8_t code) {
    bytes.push_back(code);
    return *this;
  }
  PickleBytes& raw(const std::string& text) {
    bytes.insert(bytes.end(), text.begin(), text.end());
    return *this;
  }
  PickleBytes& str(const std::string& text) {
    op('X');
    for (int i = 0; i < 4; ++i) bytes.push_back(std::uint8_t(text.size() >> (8 * i)));
    return raw(text);
  }
  PickleBytes& integer(std::int64_t value) {
    op(0x8a).op(8);  // LONG1 of 8 bytes: any int64
    for (int i = 0; i < 8; ++i) bytes.push_back(std::uint8_t(std::uint64_t(value) >> (8 * i)));
    return *this;
  }
  PickleBytes& global(const std::string& module, const std::string& name) {
    return op('c').raw(module + "\n" + name + "\n");
  }
};

struct FakeTensor {
  std::string key;
  std::vector<std::int64_t> shape;
  std::vector<float> values;
  std::int64_t declared_numel = -1;  // in the persistent id; -1 = values.size()
  std::int64_t written_count = -1;   // before the raw data; -1 = declared
};

struct LegacyFile {
  std::vector<FakeTensor> tensors;
  Bytes state_pickle;  // replaces the generated state_dict pickle when set

  Bytes bytes() const {
    PickleBytes out;
    out.op(0x80).op(2).op(0x8a).op(10);
    const std::uint8_t magic[] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
    out.bytes.insert(out.bytes.end(), std::begin(magic), std::end(magic));
    out.op('.');
    out.op(0x80).op(2).op('M').op(0xe9).op(0x03).op('.');  // protocol 1001
    out.op(0x80).op(2).op('}').op('(').str("little_endian").op(0x88).op('u').op('.');
    if (!state_pickle.empty()) {
      out.bytes.insert(out.bytes.end(), state_pickle.begin(), state_pickle.end());
    } else {
      out.op(0x80).op(2).global("collections", "OrderedDict").op(')').op('R').op('(');
      for (std::size_t t = 0; t < tensors.size(); ++t) {
        const FakeTensor& tensor = tensors[t];
        std::int64_t numel = tensor.declared_numel >= 0 ? tensor.declared_numel : std::int64_t(tensor.values.size());
        out.str(tensor.key).global("torch._utils", "_rebuild_tensor_v2").op('(');
        out.op('(').str("storage").global("torch", "FloatStorage").str(std::to_string(t)).str("cpu");
        out.integer(numel).op('N').op('t').op('Q').integer(0);
        out.op('(');
        for (auto dim : tensor.shape) out.integer(dim);
        out.op('t').op('(');
        std::int64_t stride = 1;
        std::vector<std::int64_t> strides(tensor.shape.size());
        for (std::size_t d = tensor.shape.size(); d-- > 0;) {
          strides[d] = stride;
          stride *= tensor.shape[d];
        }
        for (auto s : strides) out.integer(s);
        out.op('t').op(0x89).global("collections", "OrderedDict").op(')').op('R').op('t').op('R');
      }
      out.op('u').op('.');
    }
    out.op(0x80).op(2).op(']').op('(');
    for (std::size_t t = 0; t < tensors.size(); ++t) out.str(std::to_string(t));
    out.op('e').op('.');
    for (const auto& tensor : tensors) {
      std::int64_t count = tensor.written_count >= 0 ? tensor.written_count
                           : tensor.declared_numel >= 0 ? tensor.declared_numel
                                                        : std::int64_t(tensor.values.size());
      for (int i = 0; i < 8; ++i) out.bytes.push_back(std::uint8_t(std::uint64_t(count) >> (8 * i)));
      const auto* data = reinterpret_cast<const std::uint8_t*>(tensor.values.data());
      out.bytes.insert(out.bytes.end(), data, data + tensor.values.size() * sizeof(float));
    }
    return out.bytes;
  }
};

LegacyFile good_legacy() {
  LegacyFile file;
  file.tensors.push_back({"features.0.weight", {64, 3, 3, 3}, uniform_vector(11, 1728, -1, 1)});
  file.tensors.push_back({"features.0.bias", {64}, uniform_vector(12, 64, -1, 1)});
  return file;
}

TEST(ImportBroken, TheHandWrittenLegacyFileIsGood) {
  auto dir = tessera::testing::scratch_dir();
  auto result = import_weights(write_bytes(dir / "good.pth", good_legacy().bytes()));
  ASSERT_EQ(result.weights.convs.size(), 1u);
  EXPECT_EQ(result.weights.convs[0].weight, uniform_vector(11, 1728, -1, 1));
}

TEST(ImportBroken, PickleCallingOsSystem) {
  auto dir = tessera::testing::scratch_dir();
  LegacyFile file = good_legacy();
  PickleBytes evil;
  evil.op(0x80).op(2).global("os", "system").str("touch /tmp/tessera-owned").op(0x85).op('R').op('.');
  file.state_pickle = evil.bytes;
  EXPECT_IMPORT_ERROR(write_bytes(dir / "evil.pth", file.bytes()), ImportOptions{},
                      "refusing pickle global 'os.system'");
  EXPECT_FALSE(fs::exists("/tmp/tessera-owned"));
}

TEST(ImportBroken, HugeDeclaredStorage) {
  auto dir = tessera::testing::scratch_dir();
  LegacyFile file = good_legacy();
  file.tensors[0].declared_numel = std::int64_t(1) << 60;
  EXPECT_IMPORT_ERROR(write_bytes(dir / "huge.pth", file.bytes()), ImportOptions{}, "past the end of the file");
  file.tensors[0].written_count = 1728;  // the count in the file disagrees with the pickle
  EXPECT_IMPORT_ERROR(write_bytes(dir / "huge2.pth", file.bytes()), ImportOptions{}, "but the pickle declares");
}

TEST(ImportBroken, StoragePastTheEndOfTheFile) {
  auto dir = tessera::testing::scratch_dir();
  Bytes bytes = good_legacy().bytes();
  bytes.erase(bytes.end() - 4, bytes.end());  // the last storage loses one float
  EXPECT_IMPORT_ERROR(write_bytes(dir / "short.pth", bytes), ImportOptions{}, "past the end of the file");
}

TEST(ImportBroken, TensorOutsideItsStorage) {
  auto dir = tessera::testing::scratch_dir();
  LegacyFile file = good_legacy();
  file.tensors[1].values.resize(10);  // a 64-element bias in a 10-element storage
  EXPECT_IMPORT_ERROR(write_bytes(dir / "outside.pth", file.bytes()), ImportOptions{}, "which holds 10");
}

TEST(ImportBroken, MismatchedShapes) {
  auto dir = tessera::testing::scratch_dir();
  LegacyFile file = good_legacy();
  file.tensors[0].shape = {64, 4, 3, 3};  // conv1_1 with four input channels
  file.tensors[0].values = uniform_vector(11, 64 * 4 * 9, -1, 1);
  EXPECT_IMPORT_ERROR(write_bytes(dir / "shape.pth", file.bytes()), ImportOptions{}, "has shape 64x4x3x3");

  LegacyFile no_bias = good_legacy();
  no_bias.tensors.pop_back();
  EXPECT_IMPORT_ERROR(write_bytes(dir / "nobias.pth", no_bias.bytes()), ImportOptions{},
                      "no 'features.0.bias'");

  LegacyFile unknown;
  unknown.tensors.push_back({"encoder.block.weight", {4, 3}, uniform_vector(1, 12, -1, 1)});
  EXPECT_IMPORT_ERROR(write_bytes(dir / "unknown.pth", unknown.bytes()), ImportOptions{},
                      "cannot tell which layers");
}

TEST(ImportBroken, TruncatedLegacyFiles) {
  auto dir = tessera::testing::scratch_dir();
  Bytes full = read_bytes(fixture("vgg19_prefix_legacy.pth"));
  ASSERT_GT(full.size(), 1000u);
  for (std::size_t cut : {std::size_t(1), std::size_t(12), std::size_t(30), std::size_t(200), std::size_t(900),
                          full.size() / 3, full.size() / 2, full.size() - 100, full.size() - 1}) {
    Bytes part(full.begin(), full.begin() + std::ptrdiff_t(cut));
    std::string message = import_error(write_bytes(dir / "cut.pth", part));
    EXPECT_EQ(message.find("NOT A"), std::string::npos) << message;
    EXPECT_NE(message, "(no error)") << "cut at " << cut;
  }
}

TEST(ImportBroken, TruncatedZipFiles) {
  auto dir = tessera::testing::scratch_dir();
  Bytes full = read_bytes(fixture("vgg19_prefix_zip.pth"));
  for (std::size_t cut : {std::size_t(10), std::size_t(100), full.size() / 2, full.size() - 30, full.size() - 1}) {
    Bytes part(full.begin(), full.begin() + std::ptrdiff_t(cut));
    std::string message = import_error(write_bytes(dir / "cut.pth", part));
    EXPECT_NE(message.find("zip_open failed"), std::string::npos) << "cut at " << cut << ": " << message;
  }
}

// Replaces every occurrence of `from` by `to` (same length) in the raw bytes:
// renames a zip entry in both the local header and the central directory.
Bytes replace_all(Bytes bytes, const std::string& from, const std::string& to) {
  for (std::size_t i = 0; i + from.size() <= bytes.size(); ++i)
    if (std::memcmp(bytes.data() + i, from.data(), from.size()) == 0)
      std::memcpy(bytes.data() + i, to.data(), to.size());
  return bytes;
}

TEST(ImportBroken, ZipWithAMissingDataEntry) {
  auto dir = tessera::testing::scratch_dir();
  Bytes renamed = replace_all(read_bytes(fixture("vgg19_prefix_zip.pth")), "vgg19_prefix_zip/data/2",
                              "vgg19_prefix_zip/data/X");
  EXPECT_IMPORT_ERROR(write_bytes(dir / "vgg19_prefix_zip.pth", renamed), ImportOptions{},
                      "storage 'vgg19_prefix_zip/data/2' is missing from the archive");
}

TEST(ImportBroken, ZipWithoutAPickle) {
  auto dir = tessera::testing::scratch_dir();
  Bytes renamed = replace_all(read_bytes(fixture("vgg19_prefix_zip.pth")), "/data.pkl", "/data.pkX");
  EXPECT_IMPORT_ERROR(write_bytes(dir / "nopickle.pth", renamed), ImportOptions{}, "without <archive>/data.pkl");
}

TEST(ImportBroken, NotAWeightFile) {
  auto dir = tessera::testing::scratch_dir();
  EXPECT_IMPORT_ERROR(write_bytes(dir / "empty.pth", {}), ImportOptions{}, "is empty");
  EXPECT_IMPORT_ERROR(dir / "absent.pth", ImportOptions{}, "is not a file");
  const std::string sentence = "hello, this is not a model\n";
  Bytes text(sentence.begin(), sentence.end());
  std::string message = import_error(write_bytes(dir / "text.caffemodel", text));
  EXPECT_TRUE(message.find("cannot parse") != std::string::npos ||
              message.find("no convolution layers") != std::string::npos)
      << message;
}

// ---------------------------------------------------------------------------
// .caffemodel files, encoded here field by field (protobuf wire format), so
// that the schema's field numbers are checked against an independent writer.

struct Proto {
  Bytes bytes;
  void varint(std::uint64_t value) {
    while (value >= 0x80) {
      bytes.push_back(std::uint8_t(value | 0x80));
      value >>= 7;
    }
    bytes.push_back(std::uint8_t(value));
  }
  Proto& number(int field, std::uint64_t value) {
    varint(std::uint64_t(field) << 3);
    varint(value);
    return *this;
  }
  Proto& message(int field, const Bytes& content) {
    varint(std::uint64_t(field) << 3 | 2);
    varint(content.size());
    bytes.insert(bytes.end(), content.begin(), content.end());
    return *this;
  }
  Proto& text(int field, const std::string& content) { return message(field, Bytes(content.begin(), content.end())); }
  Proto& floats(int field, const std::vector<float>& values) {  // packed
    Bytes raw(values.size() * 4);
    std::memcpy(raw.data(), values.data(), raw.size());
    return message(field, raw);
  }
};

// BlobProto with the old num/channels/height/width shape.
Bytes legacy_blob(std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w, const std::vector<float>& data) {
  Proto blob;
  blob.number(1, std::uint64_t(n)).number(2, std::uint64_t(c)).number(3, std::uint64_t(h)).number(4, std::uint64_t(w));
  blob.floats(5, data);
  return blob.bytes;
}

// BlobProto with a BlobShape.
Bytes shaped_blob(const std::vector<std::int64_t>& dims, const std::vector<float>& data) {
  Proto shape;
  Proto packed;
  for (auto dim : dims) packed.varint(std::uint64_t(dim));
  shape.message(1, packed.bytes);
  Proto blob;
  blob.message(7, shape.bytes).floats(5, data);
  return blob.bytes;
}

// A V1-format net (the VGG ILSVRC files' format) with conv1_1, conv1_2, a ReLU
// and an fc layer.
Bytes v1_vgg_net(int conv1_1_in_channels = 3) {
  Proto net;
  net.text(1, "VGG_ILSVRC_19_layers");
  auto v1_layer = [&](const std::string& name, int type, const std::vector<Bytes>& blobs) {
    Proto layer;
    layer.text(4, name).number(5, std::uint64_t(type));
    for (const auto& blob : blobs) layer.message(6, blob);
    net.message(2, layer.bytes);
  };
  std::int64_t in = conv1_1_in_channels;
  v1_layer("conv1_1", 4,
           {legacy_blob(64, in, 3, 3, uniform_vector(21, std::size_t(64 * in * 9), -1, 1)),
            legacy_blob(1, 1, 1, 64, uniform_vector(22, 64, -1, 1))});
  v1_layer("relu1_1", 18, {});
  v1_layer("conv1_2", 4,
           {legacy_blob(64, 64, 3, 3, uniform_vector(23, 64 * 64 * 9, -1, 1)),
            legacy_blob(1, 1, 1, 64, uniform_vector(24, 64, -1, 1))});
  v1_layer("fc6", 14, {legacy_blob(1, 1, 4, 8, uniform_vector(25, 32, -1, 1))});
  return net.bytes;
}

TEST(ImportCaffe, V1Layers) {
  auto dir = tessera::testing::scratch_dir();
  auto result = import_weights(write_bytes(dir / "vgg.caffemodel", v1_vgg_net()));
  const WeightSet& weights = result.weights;
  EXPECT_EQ(weights.architecture, "vgg19");
  ASSERT_EQ(weights.convs.size(), 2u);
  EXPECT_EQ(weights.convs[0].weight, uniform_vector(21, 64 * 27, -1, 1));
  EXPECT_EQ(weights.convs[0].bias, uniform_vector(22, 64, -1, 1));
  EXPECT_EQ(weights.convs[1].weight, uniform_vector(23, 64 * 64 * 9, -1, 1));
  EXPECT_EQ(weights.convs[1].bias, uniform_vector(24, 64, -1, 1));
  expect_caffe_input(weights.input);
  EXPECT_EQ(weights.provenance.at("source_format"), "caffemodel");
  EXPECT_TRUE(has_note(result.notes, "also fit vgg16"));
}

TEST(ImportCaffe, NewLayersWithBlobShapes) {
  auto dir = tessera::testing::scratch_dir();
  Proto net;
  for (const auto& [name, type] : {std::pair{"data", "Input"}, std::pair{"conv1_1", "Convolution"}}) {
    Proto layer;
    layer.text(1, name).text(2, type);
    if (std::string(type) == "Convolution") {
      layer.message(7, shaped_blob({64, 3, 3, 3}, uniform_vector(31, 1728, -1, 1)));
      layer.message(7, shaped_blob({64}, uniform_vector(32, 64, -1, 1)));
    }
    net.message(100, layer.bytes);
  }
  ImportOptions options;
  options.architecture = "vgg16";
  auto result = import_weights(write_bytes(dir / "new.caffemodel", net.bytes), options);
  EXPECT_EQ(result.weights.architecture, "vgg16");
  ASSERT_EQ(result.weights.convs.size(), 1u);
  EXPECT_EQ(result.weights.convs[0].weight, uniform_vector(31, 1728, -1, 1));
}

// A V0-format net (NIN's format) with NIN's conv1.
Bytes v0_nin_net() {
  Proto v0;
  v0.text(1, "conv1").text(2, "conv");
  // V0 blobs are field 50
  v0.message(50, legacy_blob(96, 3, 11, 11, uniform_vector(41, 96 * 3 * 121, -1, 1)));
  v0.message(50, legacy_blob(1, 1, 1, 96, uniform_vector(42, 96, -1, 1)));
  Proto v1;
  v1.message(1, v0.bytes);
  Proto net;
  net.message(2, v1.bytes);
  return net.bytes;
}

TEST(ImportCaffe, V0LayersAndNinNames) {
  auto dir = tessera::testing::scratch_dir();
  auto result = import_weights(write_bytes(dir / "nin.caffemodel", v0_nin_net()));
  EXPECT_EQ(result.weights.architecture, "nin");
  ASSERT_EQ(result.weights.convs.size(), 1u);
  EXPECT_EQ(result.weights.convs[0].name, "conv1");
  EXPECT_EQ(result.weights.convs[0].bias, uniform_vector(42, 96, -1, 1));
}

TEST(ImportCaffe, FlattenedLegacyShapesAreReadByCount) {
  auto dir = tessera::testing::scratch_dir();
  Proto layer;
  layer.text(4, "conv1_1").number(5, 4);
  layer.message(6, legacy_blob(1, 1, 64, 27, uniform_vector(51, 1728, -1, 1)));
  layer.message(6, legacy_blob(1, 1, 1, 64, uniform_vector(52, 64, -1, 1)));
  Proto net;
  net.message(2, layer.bytes);
  auto result = import_weights(write_bytes(dir / "flat.caffemodel", net.bytes));
  ASSERT_EQ(result.weights.convs.size(), 1u);
  EXPECT_EQ(result.weights.convs[0].weight, uniform_vector(51, 1728, -1, 1));
  EXPECT_TRUE(has_note(result.notes, "stores its weights as 1x1x64x27"));
}

TEST(ImportCaffe, RefusesBrokenFiles) {
  auto dir = tessera::testing::scratch_dir();
  EXPECT_IMPORT_ERROR(write_bytes(dir / "shape.caffemodel", v1_vgg_net(4)), ImportOptions{},
                      "layer conv1_1 has weights shaped 64x4x3x3");

  Bytes full = v1_vgg_net();
  for (std::size_t cut : {std::size_t(5), std::size_t(40), std::size_t(3000), full.size() / 2, full.size() - 7}) {
    Bytes part(full.begin(), full.begin() + std::ptrdiff_t(cut));
    EXPECT_IMPORT_ERROR(write_bytes(dir / "cut.caffemodel", part), ImportOptions{},
                        "cannot parse the file as a Caffe model");
  }

  Proto missing_bias;
  Proto layer;
  layer.text(4, "conv1_1").number(5, 4).message(6, legacy_blob(64, 3, 3, 3, uniform_vector(1, 1728, -1, 1)));
  missing_bias.message(2, layer.bytes);
  EXPECT_IMPORT_ERROR(write_bytes(dir / "nobias.caffemodel", missing_bias.bytes), ImportOptions{},
                      "a convolution needs a weight and a bias");

  Proto short_data;
  Proto layer2;
  layer2.text(4, "conv1_1").number(5, 4).message(6, legacy_blob(64, 3, 3, 3, uniform_vector(1, 1000, -1, 1)));
  layer2.message(6, legacy_blob(1, 1, 1, 64, uniform_vector(2, 64, -1, 1)));
  short_data.message(2, layer2.bytes);
  EXPECT_IMPORT_ERROR(write_bytes(dir / "short.caffemodel", short_data.bytes), ImportOptions{},
                      "declares 1728 values but holds 1000");
}

TEST(ImportBroken, RandomDamageNeverCrashes) {
  // Flipped bytes anywhere in a file end in an import or a tessera::Error.
  auto dir = tessera::testing::scratch_dir();
  std::mt19937 random(20240601);
  const std::vector<std::pair<std::string, Bytes>> sources = {
      {"legacy.pth", read_bytes(fixture("vgg19_prefix_legacy.pth"))},
      {"zip.pth", read_bytes(fixture("vgg19_prefix_zip.pth"))},
      {"normalised.pth", read_bytes(fixture("normalised_legacy.pth"))},
      {"vgg.caffemodel", v1_vgg_net()},
  };
  for (const auto& [name, original] : sources) {
    ASSERT_FALSE(original.empty()) << name;
    int refused = 0;
    for (int trial = 0; trial < 150; ++trial) {
      Bytes damaged = original;
      // Mostly the first kilobytes, where the structure is.
      std::size_t span = trial % 2 ? damaged.size() : std::min<std::size_t>(damaged.size(), 2048);
      for (int flip = 0; flip < 1 + trial % 3; ++flip) damaged[random() % span] = std::uint8_t(random());
      std::string message = import_error(write_bytes(dir / name, damaged));
      EXPECT_EQ(message.find("NOT A"), std::string::npos) << name << ": " << message;
      if (message != "(no error)") ++refused;
    }
    EXPECT_GT(refused, 0) << name;
  }
}

// ---------------------------------------------------------------------------
// tools/fetch-models.sh without a network: stand-ins for the first source of
// each model already in its download folder. What it imports must be what
// `--weights NAME` and the render's default look for.

TEST(FetchModels, ImportsEachModelUnderTheNameRendersLookFor) {
  auto dir = tessera::testing::scratch_dir();
  const fs::path models = dir / "models", downloads = models / "downloads";
  fs::create_directories(downloads);
  write_bytes(downloads / "VGG_ILSVRC_19_layers.caffemodel", v1_vgg_net());
  write_bytes(downloads / "VGG_ILSVRC_16_layers.caffemodel", v1_vgg_net());
  write_bytes(downloads / "nin_imagenet_conv.caffemodel", v0_nin_net());
  const fs::path script = tessera::testing::fixture_dir() / ".." / ".." / "tools" / "fetch-models.sh";
  ASSERT_TRUE(fs::exists(script)) << script;
  const std::string command = "TESSERA='" + tessera::testing::tessera_binary().string() + "' bash '" +
                              script.string() + "' '" + models.string() + "' > '" + (dir / "fetch.log").string() +
                              "' 2>&1 < /dev/null";
  const int status = std::system(command.c_str());
  std::ifstream log_file(dir / "fetch.log");
  const std::string log((std::istreambuf_iterator<char>(log_file)), std::istreambuf_iterator<char>());
  ASSERT_EQ(status, 0) << log;
  std::vector<std::string> imported;
  for (const auto& entry : fs::directory_iterator(models))
    if (entry.path().extension() == ".h5") imported.push_back(entry.path().filename().string());
  std::sort(imported.begin(), imported.end());
  EXPECT_EQ(imported, (std::vector<std::string>{"nin.h5", "vgg16.h5", "vgg19.h5"})) << log;
  EXPECT_EQ(log.find("downloading"), std::string::npos) << "a stand-in was downloaded again:\n" << log;
  // models list names the deepest layer as import and render do.
  auto listed = tessera::testing::run_tessera("models list --dir models", dir);
  EXPECT_EQ(listed.exit_code, 0) << listed.output;
  EXPECT_NE(listed.output.find("relu1_2"), std::string::npos) << listed.output;
  EXPECT_EQ(listed.output.find("conv1_2"), std::string::npos) << listed.output;

  // A render in `dir` finds them in ./models: the default (vgg19) and by name.
  tessera::Image image(40, 32);
  for (std::size_t i = 0; i < image.pixels.size(); ++i) image.pixels[i] = float(i % 7) / 7.0f;
  tessera::io::write_image(dir / "in.png", image);
  const std::string render = "render --content in.png --style in.png --size 32 --dry-run";
  for (const std::string& weights : {std::string(), std::string("vgg19"), std::string("vgg16"), std::string("nin")}) {
    SCOPED_TRACE(weights.empty() ? "default weights" : weights);
    auto run = tessera::testing::run_tessera(render + (weights.empty() ? "" : " --weights " + weights), dir);
    EXPECT_EQ(run.exit_code, 0) << run.output;
    EXPECT_NE(run.output.find((weights.empty() ? "vgg19" : weights) + ".h5"), std::string::npos) << run.output;
  }
}

// ---------------------------------------------------------------------------
// neural-style's -model_file and -proto_file: `render` imports a .caffemodel
// itself, once, into the cache, and imports again only when the file changes.

TEST(RenderImports, ACaffemodelOnceIntoTheCache) {
  auto dir = tessera::testing::scratch_dir();
  const fs::path cache = dir / "cache";
  ASSERT_EQ(setenv("XDG_CACHE_HOME", cache.c_str(), 1), 0);
  struct Unset {
    ~Unset() { unsetenv("XDG_CACHE_HOME"); }
  } unset;
  write_bytes(dir / "VGG_ILSVRC_19_layers.caffemodel", v1_vgg_net());
  std::ofstream(dir / "vgg19.prototxt") << "name: \"VGG_ILSVRC_19_layers\"\nlayers { name: \"conv5_4\" type: CONVOLUTION }\n";
  std::ofstream(dir / "nin.prototxt") << "layers { name: \"cccp1\" type: CONVOLUTION }\n";
  std::ofstream(dir / "other.prototxt") << "layers { name: \"fc6\" }\n";
  tessera::Image image(40, 32);
  for (std::size_t i = 0; i < image.pixels.size(); ++i) image.pixels[i] = float(i % 5) / 5.0f;
  tessera::io::write_image(dir / "in.png", image);
  const std::string render = "render --content in.png --style in.png --size 32 --dry-run ";
  const std::string neural_style = render + "--proto-file vgg19.prototxt --model-file VGG_ILSVRC_19_layers.caffemodel";
  auto cached_files = [&] {
    std::vector<std::string> names;
    if (fs::exists(cache / "tessera" / "weights"))
      for (const auto& entry : fs::directory_iterator(cache / "tessera" / "weights"))
        if (entry.path().extension() == ".h5") names.push_back(entry.path().filename().string());
    return names;
  };

  auto first = tessera::testing::run_tessera(neural_style, dir);
  ASSERT_EQ(first.exit_code, 0) << first.output;
  EXPECT_NE(first.output.find("importing VGG_ILSVRC_19_layers.caffemodel"), std::string::npos) << first.output;
  ASSERT_EQ(cached_files().size(), 1u);
  EXPECT_TRUE(cached_files().front().starts_with("VGG_ILSVRC_19_layers-")) << cached_files().front();

  auto again = tessera::testing::run_tessera(neural_style, dir);
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_EQ(again.output.find("importing"), std::string::npos) << again.output;
  EXPECT_NE(again.output.find("imported earlier"), std::string::npos) << again.output;

  // --weights takes the same file; a changed file is imported again.
  write_bytes(dir / "VGG_ILSVRC_19_layers.caffemodel", v1_vgg_net());
  fs::last_write_time(dir / "VGG_ILSVRC_19_layers.caffemodel",
                      fs::last_write_time(dir / "VGG_ILSVRC_19_layers.caffemodel") + std::chrono::seconds(5));
  auto changed = tessera::testing::run_tessera(render + "--weights VGG_ILSVRC_19_layers.caffemodel", dir);
  ASSERT_EQ(changed.exit_code, 0) << changed.output;
  EXPECT_NE(changed.output.find("importing"), std::string::npos) << changed.output;
  EXPECT_EQ(cached_files().size(), 2u);

  // The prototxt names the backbone: a mismatch and an unknown one are errors.
  auto nin = tessera::testing::run_tessera(render + "--proto-file nin.prototxt --model-file VGG_ILSVRC_19_layers.caffemodel", dir);
  EXPECT_EQ(nin.exit_code, 1) << nin.output;
  EXPECT_NE(nin.output.find("nin"), std::string::npos) << nin.output;
  auto other = tessera::testing::run_tessera(render + "--proto-file other.prototxt --model-file VGG_ILSVRC_19_layers.caffemodel", dir);
  EXPECT_EQ(other.exit_code, 1) << other.output;
  EXPECT_NE(other.output.find("names no layer of a backbone"), std::string::npos) << other.output;
  auto model = tessera::testing::run_tessera(neural_style + " --model vgg16", dir);
  EXPECT_EQ(model.exit_code, 1) << model.output;
  EXPECT_NE(model.output.find("--model vgg16 but --proto-file vgg19.prototxt describes vgg19"), std::string::npos)
      << model.output;
}

// ---------------------------------------------------------------------------

TEST(Sha256, KnownVectors) {
  auto digest = [](const std::string& text) {
    tessera::io::detail::Sha256 hash;
    hash.update(reinterpret_cast<const std::uint8_t*>(text.data()), text.size());
    return hash.hex_digest();
  };
  EXPECT_EQ(digest(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(digest("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(digest("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(digest(std::string(1000000, 'a')), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

// ---------------------------------------------------------------------------
// The real normalised VGG-19 encoder, when ../shared/models has it.

TEST(ImportRealFiles, VggR31) {
  auto models = tessera::testing::model_dir();
  if (!models || !fs::exists(*models / "vgg_r31.pth"))
    GTEST_SKIP() << "vgg_r31.pth not found (set TESSERA_MODEL_DIR or provide ../shared/models)";
  fs::path source = *models / "vgg_r31.pth";
  auto result = import_weights(source);
  const WeightSet& weights = result.weights;
  EXPECT_EQ(weights.architecture, "vgg19");
  const std::vector<std::tuple<std::string, int, int>> expected = {
      {"conv1_1", 64, 3}, {"conv1_2", 64, 64}, {"conv2_1", 128, 64}, {"conv2_2", 128, 128}, {"conv3_1", 256, 128}};
  ASSERT_EQ(weights.convs.size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const auto& [name, out, in] = expected[i];
    EXPECT_EQ(weights.convs[i].name, name);
    EXPECT_EQ(weights.convs[i].out_channels, out);
    EXPECT_EQ(weights.convs[i].in_channels, in);
    EXPECT_EQ(weights.convs[i].kernel_h, 3);
    EXPECT_EQ(weights.convs[i].weight.size(), std::size_t(out * in * 9));
    for (float v : weights.convs[i].weight) ASSERT_TRUE(std::isfinite(v));
  }
  // conv1 folds in: RGB->BGR permutation times 255, Caffe's mean as the bias.
  expect_caffe_input(weights.input);
  EXPECT_EQ(weights.provenance.at("source_sha256"),
            "f9bffd632f87360d4de1bcd1627246d2b41a6278aa46e1c1fe7212796b646b7e");
  EXPECT_EQ(weights.provenance.at("source_format"), "pytorch-legacy");
  EXPECT_EQ(weights.provenance.at("source_file"), "vgg_r31.pth");

  const auto& arch = tessera::architecture("vgg19");
  EXPECT_EQ(tessera::deepest_available_layer(arch, weights), "relu3_1");

  auto dir = tessera::testing::scratch_dir();
  tessera::io::write_weights(dir / "vgg_r31.h5", weights);
  WeightSet reread = tessera::io::read_weights(dir / "vgg_r31.h5");
  ASSERT_EQ(reread.convs.size(), weights.convs.size());
  for (std::size_t i = 0; i < weights.convs.size(); ++i) {
    EXPECT_EQ(reread.convs[i].weight, weights.convs[i].weight);
    EXPECT_EQ(reread.convs[i].bias, weights.convs[i].bias);
  }
  EXPECT_EQ(reread.provenance, weights.provenance);
  EXPECT_EQ(tessera::deepest_available_layer(arch, reread), "relu3_1");

  // A .h5 given to import is read as it is, keeping its provenance.
  auto again = import_weights(dir / "vgg_r31.h5");
  EXPECT_EQ(again.weights.provenance.at("source_file"), "vgg_r31.pth");
}

}  // namespace
