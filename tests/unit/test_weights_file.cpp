// tessera's HDF5 weight file: bit-exact round trips, atomic writes, listing,
// and refusal of damaged or foreign files.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "support/test_support.hpp"
#include "tessera/error.hpp"
#include "tessera/io/weights_file.hpp"
#include "tessera/model.hpp"

// Writing deliberately wrong files needs HDF5 itself; tessera_io links it, so
// the library is on this test's link line, and Debian's serial headers live
// here. Without them those cases skip.
#if __has_include(<hdf5/serial/hdf5.h>)
#include <hdf5/serial/hdf5.h>
#define TESSERA_TEST_HAS_HDF5 1
#elif __has_include(<hdf5.h>)
#include <hdf5.h>
#define TESSERA_TEST_HAS_HDF5 1
#else
#define TESSERA_TEST_HAS_HDF5 0
#endif

namespace {

namespace fs = std::filesystem;
using tessera::WeightSet;
using tessera::io::read_weights;
using tessera::io::write_weights;

// The first `count` convolutions of `arch_name`, with seeded values, plus a few
// values whose bits must survive exactly.
WeightSet make_weights(const std::string& arch_name, std::size_t count) {
  const auto& arch = tessera::architecture(arch_name);
  WeightSet weights;
  weights.architecture = arch_name;
  weights.input = tessera::ColorTransform::torchvision();
  auto convs = arch.convolutions();
  for (std::size_t i = 0; i < count; ++i) {
    const auto& layer = *convs[i];
    tessera::ConvWeights conv;
    conv.name = layer.name;
    conv.out_channels = layer.out_channels;
    conv.in_channels = layer.in_channels;
    conv.kernel_h = conv.kernel_w = layer.kernel;
    conv.weight = tessera::testing::uniform_vector(100 + i, std::size_t(layer.out_channels) * layer.in_channels *
                                                                layer.kernel * layer.kernel,
                                                   -1, 1);
    conv.bias = tessera::testing::uniform_vector(200 + i, std::size_t(layer.out_channels), -1, 1);
    weights.convs.push_back(std::move(conv));
  }
  auto& w = weights.convs[0].weight;
  w[0] = -0.0f;
  w[1] = std::numeric_limits<float>::denorm_min();
  w[2] = std::numeric_limits<float>::max();
  w[3] = std::numeric_limits<float>::infinity();
  w[4] = std::numeric_limits<float>::quiet_NaN();
  weights.provenance["source_file"] = "example.caffemodel";
  weights.provenance["note"] = "Gatys et al. — ünïcödé survives";
  weights.provenance["empty"] = "";
  return weights;
}

std::vector<std::uint32_t> bits(const std::vector<float>& values) {
  std::vector<std::uint32_t> out(values.size());
  std::memcpy(out.data(), values.data(), values.size() * 4);
  return out;
}

void expect_identical(const WeightSet& a, const WeightSet& b) {
  EXPECT_EQ(a.architecture, b.architecture);
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 3; ++c) EXPECT_EQ(a.input.matrix[r][c], b.input.matrix[r][c]);
    EXPECT_EQ(a.input.bias[r], b.input.bias[r]);
  }
  EXPECT_EQ(a.provenance, b.provenance);
  ASSERT_EQ(a.convs.size(), b.convs.size());
  for (std::size_t i = 0; i < a.convs.size(); ++i) {
    EXPECT_EQ(a.convs[i].name, b.convs[i].name);
    EXPECT_EQ(a.convs[i].out_channels, b.convs[i].out_channels);
    EXPECT_EQ(a.convs[i].in_channels, b.convs[i].in_channels);
    EXPECT_EQ(a.convs[i].kernel_h, b.convs[i].kernel_h);
    EXPECT_EQ(a.convs[i].kernel_w, b.convs[i].kernel_w);
    EXPECT_EQ(bits(a.convs[i].weight), bits(b.convs[i].weight)) << a.convs[i].name;
    EXPECT_EQ(bits(a.convs[i].bias), bits(b.convs[i].bias)) << a.convs[i].name;
  }
}

std::vector<char> read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_bytes(const fs::path& path, const std::vector<char>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), std::streamsize(bytes.size()));
}

std::string read_error(const fs::path& path) {
  try {
    read_weights(path);
  } catch (const tessera::Error& error) {
    return error.what();
  } catch (const std::exception& error) {
    return std::string("NOT A tessera::Error: ") + error.what();
  }
  return "(no error)";
}

TEST(WeightsFile, RoundTripIsBitExact) {
  auto dir = tessera::testing::scratch_dir();
  for (const auto& [arch, count] : {std::pair{"vgg19", 3u}, std::pair{"vgg16", 2u}, std::pair{"nin", 4u}}) {
    WeightSet weights = make_weights(arch, count);
    fs::path path = dir / (std::string(arch) + ".h5");
    write_weights(path, weights);
    expect_identical(weights, read_weights(path));
  }
}

TEST(WeightsFile, WriteIsAtomicAndOverwrites) {
  auto dir = tessera::testing::scratch_dir();
  fs::path path = dir / "model.h5";
  write_weights(path, make_weights("vgg19", 1));
  write_weights(path, make_weights("vgg19", 2));  // replaces the first
  EXPECT_EQ(read_weights(path).convs.size(), 2u);
  int entries = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    ++entries;
    EXPECT_EQ(entry.path().filename(), "model.h5") << "left behind: " << entry.path();
  }
  EXPECT_EQ(entries, 1);

  // A failed write leaves the old file alone and no temporary behind.
  WeightSet bad = make_weights("vgg19", 2);
  bad.convs[1].in_channels = 3;
  EXPECT_THROW(write_weights(path, bad), tessera::Error);
  EXPECT_EQ(read_weights(path).convs.size(), 2u);

  try {
    write_weights(dir / "no-such-folder" / "model.h5", make_weights("vgg19", 1));
    FAIL() << "expected an error";
  } catch (const tessera::Error& error) {
    std::string message = error.what();
    EXPECT_NE(message.find("HDF5 call H5Fcreate failed"), std::string::npos) << message;
    EXPECT_NE(message.find("no-such-folder"), std::string::npos) << message;
  }
}

TEST(WeightsFile, RefusesInvalidSets) {
  auto dir = tessera::testing::scratch_dir();
  WeightSet out_of_order = make_weights("vgg19", 2);
  std::swap(out_of_order.convs[0], out_of_order.convs[1]);
  EXPECT_THROW(write_weights(dir / "a.h5", out_of_order), tessera::Error);
  WeightSet short_bias = make_weights("vgg19", 1);
  short_bias.convs[0].bias.pop_back();
  EXPECT_THROW(write_weights(dir / "b.h5", short_bias), tessera::Error);
  EXPECT_FALSE(fs::exists(dir / "a.h5"));
  EXPECT_FALSE(fs::exists(dir / "b.h5"));
}

TEST(WeightsFile, RefusesForeignAndMissingFiles) {
  auto dir = tessera::testing::scratch_dir();
  EXPECT_NE(read_error(dir / "absent.h5").find("not found"), std::string::npos);
  write_bytes(dir / "text.h5", {'n', 'o', 't', ' ', 'h', 'd', 'f', '5'});
  EXPECT_NE(read_error(dir / "text.h5").find("not an HDF5 file"), std::string::npos) << read_error(dir / "text.h5");
}

TEST(WeightsFile, RefusesTruncatedFiles) {
  auto dir = tessera::testing::scratch_dir();
  write_weights(dir / "full.h5", make_weights("vgg19", 2));
  auto full = read_bytes(dir / "full.h5");
  for (std::size_t cut : {std::size_t(4), std::size_t(100), std::size_t(2000), full.size() / 4, full.size() / 2,
                          full.size() - 1000, full.size() - 1}) {
    std::vector<char> part(full.begin(), full.begin() + std::ptrdiff_t(cut));
    write_bytes(dir / "cut.h5", part);
    std::string message = read_error(dir / "cut.h5");
    EXPECT_NE(message.find("cut.h5"), std::string::npos) << "cut at " << cut << ": " << message;
    EXPECT_EQ(message.find("NOT A"), std::string::npos) << message;
  }
}

TEST(WeightsFile, ChecksumCatchesCorruptWeights) {
  auto dir = tessera::testing::scratch_dir();
  WeightSet weights = make_weights("vgg19", 2);
  write_weights(dir / "good.h5", weights);
  auto bytes = read_bytes(dir / "good.h5");
  // Find conv1_2's weights (raw float32 in a chunk) and flip one bit in them.
  const auto& target = weights.convs[1].weight;
  const char* needle = reinterpret_cast<const char*>(target.data() + 1000);
  auto found = std::search(bytes.begin(), bytes.end(), needle, needle + 64);
  ASSERT_NE(found, bytes.end());
  found[10] = char(found[10] ^ 0x04);
  write_bytes(dir / "bad.h5", bytes);
  std::string message = read_error(dir / "bad.h5");
  EXPECT_NE(message.find("H5Dread"), std::string::npos) << message;
  EXPECT_NE(message.find("bad.h5"), std::string::npos) << message;
}

TEST(WeightsFile, ListsAFolder) {
  auto dir = tessera::testing::scratch_dir();
  WeightSet a = make_weights("vgg19", 3);
  a.provenance["source_file"] = "VGG_ILSVRC_19_layers.caffemodel";
  write_weights(dir / "vgg19.h5", a);
  write_weights(dir / "nin.h5", make_weights("nin", 2));
  write_bytes(dir / "broken.h5", {'x'});
  write_bytes(dir / "readme.txt", {'x'});
  auto list = tessera::io::list_weight_files(dir);
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[0].name, "broken");
  EXPECT_FALSE(list[0].problem.empty());
  EXPECT_EQ(list[1].name, "nin");
  EXPECT_EQ(list[1].architecture, "nin");
  EXPECT_EQ(list[1].conv_count, 2);
  EXPECT_EQ(list[1].deepest_conv, "cccp1");
  EXPECT_EQ(list[2].name, "vgg19");
  EXPECT_EQ(list[2].architecture, "vgg19");
  EXPECT_EQ(list[2].conv_count, 3);
  EXPECT_EQ(list[2].deepest_conv, "conv2_1");
  EXPECT_EQ(list[2].source, "VGG_ILSVRC_19_layers.caffemodel");
  EXPECT_EQ(list[2].size_bytes, fs::file_size(dir / "vgg19.h5"));
  EXPECT_TRUE(list[2].problem.empty()) << list[2].problem;
  EXPECT_THROW(tessera::io::list_weight_files(dir / "absent"), tessera::Error);
}

#if TESSERA_TEST_HAS_HDF5
// Writes a tessera-like file by hand and lets `spoil` change one thing.
struct HandWritten {
  std::string format = "tessera-weights";
  int version = 1;
  std::string architecture = "vgg19";
  int conv_count = 1;
  std::string group = "00_conv1_1";
  std::vector<hsize_t> weight_dims = {64, 3, 3, 3};
  hsize_t bias_length = 64;
  hid_t weight_type = H5T_IEEE_F32LE;

  void write(const fs::path& path) const {
    hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    ASSERT_GE(file, 0);
    auto string_attribute = [&](hid_t where, const char* name, const std::string& value) {
      hid_t type = H5Tcopy(H5T_C_S1);
      H5Tset_size(type, value.size());
      hid_t space = H5Screate(H5S_SCALAR);
      hid_t attribute = H5Acreate2(where, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
      H5Awrite(attribute, type, value.data());
      H5Aclose(attribute);
      H5Sclose(space);
      H5Tclose(type);
    };
    auto int_attribute = [&](const char* name, int value) {
      hid_t space = H5Screate(H5S_SCALAR);
      hid_t attribute = H5Acreate2(file, name, H5T_STD_I32LE, space, H5P_DEFAULT, H5P_DEFAULT);
      H5Awrite(attribute, H5T_NATIVE_INT, &value);
      H5Aclose(attribute);
      H5Sclose(space);
    };
    auto float_attribute = [&](const char* name, std::vector<hsize_t> dims) {
      std::vector<float> values(9, 1.0f);
      hid_t space = H5Screate_simple(int(dims.size()), dims.data(), nullptr);
      hid_t attribute = H5Acreate2(file, name, H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT);
      H5Awrite(attribute, H5T_NATIVE_FLOAT, values.data());
      H5Aclose(attribute);
      H5Sclose(space);
    };
    auto dataset = [&](hid_t where, const char* name, std::vector<hsize_t> dims, hid_t type) {
      hsize_t count = 1;
      for (auto d : dims) count *= d;
      std::vector<float> values(count, 0.5f);
      hid_t space = H5Screate_simple(int(dims.size()), dims.data(), nullptr);
      hid_t set = H5Dcreate2(where, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
      H5Dwrite(set, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data());
      H5Dclose(set);
      H5Sclose(space);
    };
    string_attribute(file, "format", format);
    int_attribute("format_version", version);
    string_attribute(file, "architecture", architecture);
    int_attribute("conv_count", conv_count);
    float_attribute("input_matrix", {3, 3});
    float_attribute("input_bias", {3});
    hid_t convs = H5Gcreate2(file, "convs", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t conv = H5Gcreate2(convs, group.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    dataset(conv, "weight", weight_dims, weight_type);
    dataset(conv, "bias", {bias_length}, H5T_IEEE_F32LE);
    H5Gclose(conv);
    H5Gclose(convs);
    H5Fclose(file);
  }
};

TEST(WeightsFile, ValidatesEverythingOnRead) {
  auto dir = tessera::testing::scratch_dir();
  auto expect_refused = [&](const HandWritten& spec, const std::string& fragment) {
    fs::path path = dir / "hand.h5";
    spec.write(path);
    std::string message = read_error(path);
    EXPECT_NE(message.find(fragment), std::string::npos) << message;
    EXPECT_NE(message.find("hand.h5"), std::string::npos) << message;
  };
  HandWritten good;
  good.write(dir / "good.h5");
  EXPECT_EQ(read_weights(dir / "good.h5").convs.size(), 1u);  // variable-free, ASCII strings also read

  HandWritten spec;
  spec.format = "something-else";
  expect_refused(spec, "its format is 'something-else', not 'tessera-weights'");
  spec.format = "tessera-checkpoint";
  expect_refused(spec, "it is a render's checkpoint (--resume reads those)");
  spec = {};
  spec.version = 2;
  expect_refused(spec, "format_version is 2");
  spec = {};
  spec.conv_count = 2;
  expect_refused(spec, "conv_count says 2");
  spec = {};
  spec.group = "01_conv1_1";
  expect_refused(spec, "position 0 is missing");
  spec = {};
  spec.group = "conv1_1";
  expect_refused(spec, "not named <position>_<layer>");
  spec = {};
  spec.bias_length = 32;
  expect_refused(spec, "32 biases for 64 output channels");
  spec = {};
  spec.weight_dims = {64, 3, 9};
  expect_refused(spec, "has rank 3, expected 4");
  spec = {};
  spec.weight_type = H5T_IEEE_F64LE;
  expect_refused(spec, "is not float32");
  spec = {};
  spec.weight_dims = {64, 4, 3, 3};
  expect_refused(spec, "has shape 64x4x3x3");
  spec = {};
  spec.architecture = "alexnet";
  expect_refused(spec, "unknown model 'alexnet'");
}
#endif

}  // namespace
