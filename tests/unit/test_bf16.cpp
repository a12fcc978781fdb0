// 16-bit activation storage (bf16) against the f32 reference: the same
// objective on the same inputs, within tolerances measured here and written
// down in the README. Skips on CPUs without AVX-512 BF16.
#include <gtest/gtest.h>

#include <cmath>

#include "support/golden.hpp"
#include "support/test_support.hpp"
#include "support/whole_objective.hpp"
#include "tessera/backend.hpp"
#include "tessera/error.hpp"
#include "tessera/objective.hpp"

namespace tessera {
namespace {

struct Evaluation {
  LossTerms losses;
  std::vector<float> gradient;
};

Evaluation evaluate(Precision precision, const WeightSet& weights, const ObjectiveSettings& settings, Shape shape,
                    Shape style_shape) {
  auto backend = make_backend("cpu");
  backend->set_precision(precision);
  SingleProcess single;
  testing::WholeObjective objective(*backend, architecture(weights.architecture), weights, shape, settings, single);
  auto upload = [&](Shape s, std::uint64_t seed) {
    Tensor t = backend->allocate(s, Layout::planar);
    backend->upload(testing::uniform_vector(seed, s.elements(), -100.0f, 100.0f), t);
    return t;
  };
  Tensor x = upload(shape, 111), content = upload(shape, 12), style = upload(style_shape, 13);
  objective.set_content(content);
  objective.set_styles({&style}, {1.0f}, weights);
  Tensor gradient = backend->allocate(shape, Layout::planar);
  Evaluation e;
  e.losses = objective.evaluate(x, gradient);
  e.gradient.resize(gradient.elements());
  backend->download(gradient, e.gradient);
  return e;
}

TEST(Bf16, LossAndGradientAgreeWithF32) {
  {
    auto probe = make_backend("cpu");
    try {
      probe->set_precision(Precision::bf16);
    } catch (const Error& e) {
      GTEST_SKIP() << "no bf16 on this CPU: " << e.what();
    }
  }
  WeightSet weights = testing::synthetic_weights("vgg19");
  ObjectiveSettings settings;
  settings.content_layers = {"relu4_2"};
  settings.style_layers = {"relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"};
  Shape shape{3, 40, 48}, style_shape{3, 44, 36};
  Evaluation f32 = evaluate(Precision::f32, weights, settings, shape, style_shape);
  Evaluation bf16 = evaluate(Precision::bf16, weights, settings, shape, style_shape);

  // bf16 keeps 8 significant bits (relative rounding 2^-9 = 0.2 %). Measured
  // on this case: content loss 1.2e-4 and style loss 7.8e-4 relative; the
  // gradient, carried down 16 layers in bf16, cosine 0.9962 to f32's and
  // norm 0.37 % off. The bounds sit a few times above those.
  auto relative = [](double a, double b) { return std::abs(a - b) / std::abs(b); };
  EXPECT_LT(relative(bf16.losses.content, f32.losses.content), 0.005);
  EXPECT_LT(relative(bf16.losses.style, f32.losses.style), 0.005);
  EXPECT_EQ(bf16.losses.tv, f32.losses.tv);  // on the f32 image in both
  // The gradient as a whole: its direction and size.
  ASSERT_EQ(bf16.gradient.size(), f32.gradient.size());
  auto agreement = testing::compare_gradients(f32.gradient, bf16.gradient);
  EXPECT_GT(agreement.cosine, 0.99);
  EXPECT_LT(agreement.norm_relative, 0.02);
  std::printf("bf16 vs f32: content %.3e, style %.3e relative; gradient cosine %.6f, norm %.3e relative\n",
              relative(bf16.losses.content, f32.losses.content), relative(bf16.losses.style, f32.losses.style),
              agreement.cosine, agreement.norm_relative);
}

// --precision auto: the CPU keeps the f32 reference at every size; the GPU
// stores bf16 from 4K (3840 x 2160 pixels, in any shape) up.
TEST(Bf16, AutoPrecisionIsBf16OnTheGpuFrom4K) {
  EXPECT_EQ(choose_precision("auto", "cpu", 7680, 4320), Precision::f32);
  EXPECT_EQ(choose_precision("auto", "cuda", 3840, 2160), Precision::bf16);
  EXPECT_EQ(choose_precision("auto", "cuda", 2160, 3840), Precision::bf16);
  EXPECT_EQ(choose_precision("auto", "cuda", 3840, 2159), Precision::f32);
  EXPECT_EQ(choose_precision("auto", "cuda", 2048, 2048), Precision::f32);
  EXPECT_EQ(choose_precision("f32", "cuda", 7680, 4320), Precision::f32);
  EXPECT_EQ(choose_precision("bf16", "cpu", 64, 64), Precision::bf16);
  EXPECT_THROW(choose_precision("fp16", "cuda", 64, 64), Error);
}

}  // namespace
}  // namespace tessera
