// Helpers shared by the tests: where the real data lives, and seeded inputs.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace tessera::testing {

// ../shared/models (or $TESSERA_MODEL_DIR) and ../shared/images (or
// $TESSERA_IMAGE_DIR); nullopt when the folder is absent.
std::optional<std::filesystem::path> model_dir();
std::optional<std::filesystem::path> image_dir();
std::filesystem::path golden_dir();
std::filesystem::path fixture_dir();
// The built tessera executable (for tests that run the command).
std::filesystem::path tessera_binary();
// A fresh empty folder under the system temp folder, named after the test.
std::filesystem::path scratch_dir();

// `tessera ARGUMENTS` run by the shell in `folder`, stdin from /dev/null.
struct CommandRun {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};
CommandRun run_tessera(const std::string& arguments, const std::filesystem::path& folder);

// Deterministic values in [lo, hi): a counter-based generator (splitmix64), so
// the same (seed, index) gives the same value in C++ and in the Python
// scripts that write the golden files.
float uniform_at(std::uint64_t seed, std::uint64_t index, float lo, float hi);
std::vector<float> uniform_vector(std::uint64_t seed, std::size_t count, float lo, float hi);

// How a gradient compares with a reference as a whole: the cosine of the
// angle between them and the relative difference of their norms.
struct GradientAgreement {
  double cosine = 0.0;
  double norm_relative = 0.0;
};
GradientAgreement compare_gradients(const std::vector<float>& reference, const std::vector<float>& other);

}  // namespace tessera::testing
