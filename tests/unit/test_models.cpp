// The backbones as layer lists (VGG-19, VGG-16, NIN), their receptive fields
// against DESIGN.md section 2's table, the checks on a weight set, and the
// errors a Network gives for taps it cannot compute.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "support/golden.hpp"
#include "tessera/backend.hpp"
#include "tessera/error.hpp"
#include "tessera/model.hpp"
#include "tessera/network.hpp"

namespace tessera {
namespace {

using testing::synthetic_weights;

std::vector<std::string> names_of(const Architecture& arch, LayerKind kind) {
  std::vector<std::string> names;
  for (const auto& layer : arch.layers)
    if (layer.kind == kind) names.push_back(layer.name);
  return names;
}

std::vector<std::string> conv_names(const Architecture& arch) {
  std::vector<std::string> names;
  for (const LayerSpec* conv : arch.convolutions()) names.push_back(conv->name);
  return names;
}

// The message of the tessera::Error that `call` throws ("" and a test
// failure when it throws nothing or something else).
template <typename Call>
std::string error_message(Call&& call) {
  try {
    call();
  } catch (const Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw a " << typeid(e).name() << " instead of tessera::Error: " << e.what();
    return "";
  }
  ADD_FAILURE() << "no tessera::Error thrown";
  return "";
}

void expect_contains(const std::string& text, const std::string& part, int line) {
  EXPECT_TRUE(text.find(part) != std::string::npos)
      << "line " << line << ": \"" << part << "\" missing from the message \"" << text << "\"";
}
#define EXPECT_CONTAINS(text, part) expect_contains((text), (part), __LINE__)

// VGG: conv blocks of 3x3 / pad 1 / stride 1 convolutions, each with its
// ReLU, a 2x2/2 floor pool after blocks 1-4 and none after block 5.
void check_vgg(const Architecture& arch, const std::vector<int>& convs_per_block) {
  const int widths[] = {64, 128, 256, 512, 512};
  std::vector<std::string> expected;
  int in = 3;
  std::size_t position = 0;
  for (int block = 0; block < 5; ++block) {
    for (int i = 1; i <= convs_per_block[block]; ++i) {
      std::string suffix = std::to_string(block + 1) + "_" + std::to_string(i);
      ASSERT_LT(position + 1, arch.layers.size());
      const LayerSpec& conv = arch.layers[position++];
      const LayerSpec& relu = arch.layers[position++];
      EXPECT_EQ(conv.kind, LayerKind::conv);
      EXPECT_EQ(conv.name, "conv" + suffix);
      EXPECT_EQ(conv.in_channels, in);
      EXPECT_EQ(conv.out_channels, widths[block]);
      EXPECT_EQ(conv.kernel, 3);
      EXPECT_EQ(conv.stride, 1);
      EXPECT_EQ(conv.pad, 1);
      EXPECT_EQ(relu.kind, LayerKind::relu);
      EXPECT_EQ(relu.name, "relu" + suffix);
      in = widths[block];
    }
    if (block < 4) {
      ASSERT_LT(position, arch.layers.size());
      const LayerSpec& pool = arch.layers[position++];
      EXPECT_EQ(pool.kind, LayerKind::max_pool);
      EXPECT_EQ(pool.name, "pool" + std::to_string(block + 1));
      EXPECT_EQ(pool.kernel, 2);
      EXPECT_EQ(pool.stride, 2);
      EXPECT_FALSE(pool.ceil_mode);
    }
  }
  EXPECT_EQ(position, arch.layers.size()) << "layers after relu5_" << convs_per_block[4];
}

TEST(Architectures, Vgg19HasSixteenConvolutionsInFiveBlocks) {
  const Architecture& arch = architecture("vgg19");
  EXPECT_EQ(arch.name, "vgg19");
  EXPECT_EQ(arch.convolutions().size(), 16u);
  check_vgg(arch, {2, 2, 4, 4, 4});
  EXPECT_EQ(arch.default_content_layer, "relu4_2");
  EXPECT_EQ(arch.default_style_layers,
            (std::vector<std::string>{"relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"}));
}

TEST(Architectures, Vgg16HasThirteenConvolutions) {
  const Architecture& arch = architecture("vgg16");
  EXPECT_EQ(arch.convolutions().size(), 13u);
  check_vgg(arch, {2, 2, 3, 3, 3});
}

TEST(Architectures, NinHasTwelveConvolutionsAndNoRelu4) {
  const Architecture& arch = architecture("nin");
  EXPECT_EQ(conv_names(arch), (std::vector<std::string>{"conv1", "cccp1", "cccp2", "conv2", "cccp3", "cccp4", "conv3",
                                                        "cccp5", "cccp6", "conv4-1024", "cccp7-1024", "cccp8-1024"}));
  // nin_imagenet_conv's prototxt numbers its ReLUs 0..12 and skips 4.
  EXPECT_EQ(names_of(arch, LayerKind::relu),
            (std::vector<std::string>{"relu0", "relu1", "relu2", "relu3", "relu5", "relu6", "relu7", "relu8", "relu9",
                                      "relu10", "relu11", "relu12"}));
  EXPECT_EQ(arch.index_of("relu4"), -1);
  EXPECT_EQ(names_of(arch, LayerKind::max_pool), (std::vector<std::string>{"pool0", "pool2", "pool3"}));
  for (const auto& layer : arch.layers) {
    if (layer.kind == LayerKind::max_pool) {
      EXPECT_EQ(layer.kernel, 3) << layer.name;
      EXPECT_EQ(layer.stride, 2) << layer.name;
      EXPECT_TRUE(layer.ceil_mode) << layer.name << ": Caffe rounds NIN's pool sizes up";
    }
  }
  // Every convolution is followed by its ReLU (the network fuses the pair),
  // and the channel counts chain.
  int channels = 3;
  for (std::size_t i = 0; i < arch.layers.size(); ++i) {
    const LayerSpec& layer = arch.layers[i];
    if (layer.kind != LayerKind::conv) continue;
    EXPECT_EQ(layer.in_channels, channels) << layer.name;
    channels = layer.out_channels;
    ASSERT_LT(i + 1, arch.layers.size());
    EXPECT_EQ(arch.layers[i + 1].kind, LayerKind::relu) << "after " << layer.name;
  }
  EXPECT_EQ(channels, 1000);
  const LayerSpec& conv1 = arch.layers[arch.index_of("conv1")];
  EXPECT_EQ(conv1.kernel, 11);
  EXPECT_EQ(conv1.stride, 4);
  EXPECT_EQ(conv1.pad, 0);
}

TEST(Architectures, LookupByName) {
  auto names = architecture_names();
  for (const char* name : {"vgg19", "vgg16", "nin"})
    EXPECT_NE(std::find(names.begin(), names.end(), name), names.end()) << name;
  EXPECT_CONTAINS(error_message([] { architecture("resnet50"); }), "resnet50");
  EXPECT_EQ(architecture("vgg19").index_of("pool3"), architecture("vgg19").index_of("relu3_4") + 1);
  EXPECT_EQ(architecture("vgg19").index_of("no_such_layer"), -1);
}

struct FieldCase {
  const char* model;
  const char* layer;
  int size_px;
  int stride_px;
};

// DESIGN.md section 2, "Receptive fields".
TEST(ReceptiveField, MatchesTheDesignTable) {
  const FieldCase table[] = {
      {"vgg19", "relu1_1", 3, 1},  {"vgg19", "relu2_1", 10, 2}, {"vgg19", "relu3_1", 24, 4},
      {"vgg19", "relu4_1", 68, 8}, {"vgg19", "relu4_2", 84, 8}, {"vgg19", "relu5_1", 156, 16},
      {"nin", "relu0", 11, 4},     {"nin", "relu3", 51, 8},     {"nin", "relu7", 99, 16},
      {"nin", "relu12", 195, 32},
  };
  for (const auto& row : table) {
    ReceptiveField field = receptive_field(architecture(row.model), row.layer);
    EXPECT_EQ(field.size_px, row.size_px) << row.model << " " << row.layer;
    EXPECT_EQ(field.stride_px, row.stride_px) << row.model << " " << row.layer;
  }
}

TEST(ReceptiveField, GrowsThroughPoolsAndNotThroughReluOrOneByOne) {
  const Architecture& vgg = architecture("vgg19");
  // A ReLU adds nothing to its convolution's field; the 2x2/2 pool after
  // relu1_2 (R 5) adds one pixel and doubles the stride.
  EXPECT_EQ(receptive_field(vgg, "conv1_1").size_px, receptive_field(vgg, "relu1_1").size_px);
  EXPECT_EQ(receptive_field(vgg, "relu1_2").size_px, 5);
  EXPECT_EQ(receptive_field(vgg, "pool1").size_px, 6);
  EXPECT_EQ(receptive_field(vgg, "pool1").stride_px, 2);
  const Architecture& nin = architecture("nin");
  // cccp layers are 1x1: same field as conv1.
  EXPECT_EQ(receptive_field(nin, "relu2").size_px, 11);
  EXPECT_EQ(receptive_field(nin, "relu12").size_px, receptive_field(nin, "relu10").size_px);
  EXPECT_CONTAINS(error_message([&] { receptive_field(vgg, "relu9_9"); }), "relu9_9");
}

TEST(ValidateWeights, AcceptsWholeSetsAndPrefixes) {
  EXPECT_NO_THROW(validate_weights(architecture("vgg19"), synthetic_weights("vgg19", 1)));
  EXPECT_NO_THROW(validate_weights(architecture("vgg19"), synthetic_weights("vgg19", 5)));
  EXPECT_NO_THROW(validate_weights(architecture("vgg16"), synthetic_weights("vgg16", 13)));
  EXPECT_NO_THROW(validate_weights(architecture("nin"), synthetic_weights("nin", 12)));
}

TEST(ValidateWeights, NamesTheFirstMismatch) {
  const Architecture& vgg = architecture("vgg19");

  WeightSet renamed = synthetic_weights("vgg19", 3);
  renamed.convs[1].name = "conv1_x";
  std::string message = error_message([&] { validate_weights(vgg, renamed); });
  EXPECT_CONTAINS(message, "conv1_x");
  EXPECT_CONTAINS(message, "conv1_2");

  WeightSet reshaped = synthetic_weights("vgg19", 3);
  reshaped.convs[2].out_channels = 96;
  message = error_message([&] { validate_weights(vgg, reshaped); });
  EXPECT_CONTAINS(message, "conv2_1");
  EXPECT_CONTAINS(message, "96x64x3x3");
  EXPECT_CONTAINS(message, "128x64x3x3");

  WeightSet short_weights = synthetic_weights("vgg19", 2);
  short_weights.convs[0].weight.pop_back();
  message = error_message([&] { validate_weights(vgg, short_weights); });
  EXPECT_CONTAINS(message, "conv1_1");
  EXPECT_CONTAINS(message, "1727");

  WeightSet short_bias = synthetic_weights("vgg19", 2);
  short_bias.convs[1].bias.resize(10);
  EXPECT_CONTAINS(error_message([&] { validate_weights(vgg, short_bias); }), "conv1_2");
}

TEST(ValidateWeights, RefusesTooManyConvolutions) {
  // VGG-19's first 14 convolutions labelled as VGG-16 (which has 13).
  WeightSet too_many = synthetic_weights("vgg19", 14);
  too_many.architecture = "vgg16";
  std::string message = error_message([&] { validate_weights(architecture("vgg16"), too_many); });
  EXPECT_CONTAINS(message, "14");
  EXPECT_CONTAINS(message, "13");
}

TEST(ValidateWeights, RefusesAnotherArchitectureAndEmptySets) {
  WeightSet nin = synthetic_weights("nin", 2);
  std::string message = error_message([&] { validate_weights(architecture("vgg19"), nin); });
  EXPECT_CONTAINS(message, "nin");
  EXPECT_CONTAINS(message, "vgg19");

  WeightSet empty;
  empty.architecture = "vgg19";
  EXPECT_CONTAINS(error_message([&] { validate_weights(architecture("vgg19"), empty); }), "no convolution");
}

TEST(DeepestAvailableLayer, IsTheReluOfTheLastConvolutionCovered) {
  const Architecture& vgg = architecture("vgg19");
  EXPECT_EQ(deepest_available_layer(vgg, synthetic_weights("vgg19", 1)), "relu1_1");
  // A trailing pool is not reported: 2 convolutions end at relu1_2, not pool1.
  EXPECT_EQ(deepest_available_layer(vgg, synthetic_weights("vgg19", 2)), "relu1_2");
  EXPECT_EQ(deepest_available_layer(vgg, synthetic_weights("vgg19", 3)), "relu2_1");
  EXPECT_EQ(deepest_available_layer(vgg, synthetic_weights("vgg19", 5)), "relu3_1");
  EXPECT_EQ(deepest_available_layer(vgg, synthetic_weights("vgg19", 10)), "relu4_2");
  const Architecture& nin = architecture("nin");
  EXPECT_EQ(deepest_available_layer(nin, synthetic_weights("nin", 3)), "relu2");
  EXPECT_EQ(deepest_available_layer(nin, synthetic_weights("nin", 4)), "relu3");
  EXPECT_EQ(deepest_available_layer(nin, synthetic_weights("nin", 5)), "relu5");
}

class NetworkErrors : public ::testing::Test {
 protected:
  std::unique_ptr<Backend> backend = make_backend("cpu");
};

TEST_F(NetworkErrors, TapBeyondTheWeightsNamesTheDeepestLayerAvailable) {
  WeightSet weights = synthetic_weights("vgg19", 5);  // up to conv3_1
  std::string message = error_message([&] {
    Network(*backend, architecture("vgg19"), weights, Pooling::max, {3, 32, 32}, {"relu1_1", "relu4_1"});
  });
  EXPECT_CONTAINS(message, "relu4_1");
  EXPECT_CONTAINS(message, "relu3_1");
  // The deepest layer the weights reach works.
  EXPECT_NO_THROW(Network(*backend, architecture("vgg19"), weights, Pooling::max, {3, 32, 32}, {"relu3_1"}));
}

TEST_F(NetworkErrors, UnknownLayerListsTheLayers) {
  WeightSet weights = synthetic_weights("vgg19", 3);
  std::string message = error_message([&] {
    Network(*backend, architecture("vgg19"), weights, Pooling::max, {3, 16, 16}, {"relu2_1", "relu9_9"});
  });
  EXPECT_CONTAINS(message, "relu9_9");
  EXPECT_CONTAINS(message, "relu1_1");
  EXPECT_CONTAINS(message, "relu2_1");
  // A layer that exists but is not a ReLU output cannot carry a loss.
  EXPECT_CONTAINS(error_message([&] {
                    Network(*backend, architecture("vgg19"), weights, Pooling::max, {3, 16, 16}, {"conv1_1"});
                  }),
                  "conv1_1");
  // NIN has no relu4.
  WeightSet nin = synthetic_weights("nin", 4);
  EXPECT_CONTAINS(error_message([&] {
                    Network(*backend, architecture("nin"), nin, Pooling::max, {3, 64, 64}, {"relu4"});
                  }),
                  "relu4");
}

TEST_F(NetworkErrors, WeightsOfAnotherModelAreRefused) {
  WeightSet nin = synthetic_weights("nin", 2);
  EXPECT_CONTAINS(error_message([&] {
                    Network(*backend, architecture("vgg19"), nin, Pooling::max, {3, 16, 16}, {"relu1_1"});
                  }),
                  "nin");
}

// An image smaller than a layer's window must be a clear error, never a
// silently wrong (or out-of-bounds) computation.
TEST_F(NetworkErrors, ImageTooSmallForNinIsAnError) {
  WeightSet weights = synthetic_weights("nin");
  std::string message = error_message([&] {
    Network(*backend, architecture("nin"), weights, Pooling::max, {3, 8, 8}, {"relu0", "relu3", "relu7", "relu12"});
  });
  EXPECT_CONTAINS(message, "too small");
}

TEST_F(NetworkErrors, ImageNarrowerThanTheFirstKernelIsAnError) {
  // conv1 is 11x11, stride 4, no padding: an 8 px (or 10 px) wide input has
  // no valid output position. (8 - 11) / 4 + 1 rounds to 1 under C++'s
  // truncating division, so a size rule written that way would miss it.
  WeightSet weights = synthetic_weights("nin", 1);
  for (Shape input : {Shape{3, 8, 8}, Shape{3, 10, 40}, Shape{3, 40, 10}}) {
    SCOPED_TRACE(input.describe());
    EXPECT_CONTAINS(
        error_message([&] { Network(*backend, architecture("nin"), weights, Pooling::max, input, {"relu0"}); }),
        "too small");
  }
  // 11 px is the smallest input conv1 accepts: one output position.
  Network smallest(*backend, architecture("nin"), weights, Pooling::max, {3, 11, 11}, {"relu0"});
  EXPECT_EQ(smallest.tap_shape(0), (Shape{96, 1, 1}));
}

TEST_F(NetworkErrors, ImageTooSmallForVggPoolingIsAnError) {
  WeightSet weights = synthetic_weights("vgg19", 3);
  EXPECT_CONTAINS(error_message([&] {
                    Network(*backend, architecture("vgg19"), weights, Pooling::max, {3, 1, 5}, {"relu2_1"});
                  }),
                  "too small");
}

}  // namespace
}  // namespace tessera
