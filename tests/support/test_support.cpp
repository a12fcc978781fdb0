#include "support/test_support.hpp"

#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace tessera::testing {
namespace {

std::optional<std::filesystem::path> shared_subdir(const char* variable, const char* name) {
  if (const char* set = std::getenv(variable); set && *set) {
    std::filesystem::path path(set);
    if (std::filesystem::is_directory(path)) return path;
    return std::nullopt;
  }
  const char* shared = std::getenv("TESSERA_DEFAULT_SHARED_DIR");
  std::filesystem::path path = std::filesystem::path(shared ? shared : "../shared") / name;
  if (std::filesystem::is_directory(path)) return path;
  return std::nullopt;
}

std::filesystem::path env_path(const char* variable, const char* fallback) {
  const char* set = std::getenv(variable);
  return std::filesystem::path(set && *set ? set : fallback);
}

}  // namespace

std::optional<std::filesystem::path> model_dir() { return shared_subdir("TESSERA_MODEL_DIR", "models"); }
std::optional<std::filesystem::path> image_dir() { return shared_subdir("TESSERA_IMAGE_DIR", "images"); }
std::filesystem::path golden_dir() { return env_path("TESSERA_GOLDEN_DIR", "tests/golden"); }
std::filesystem::path fixture_dir() { return env_path("TESSERA_FIXTURE_DIR", "tests/fixtures"); }
std::filesystem::path tessera_binary() { return env_path("TESSERA_BINARY", "tessera"); }

std::filesystem::path scratch_dir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = info ? std::string(info->test_suite_name()) + "." + info->name() : "tessera";
  for (char& c : name)
    if (c == '/') c = '_';
  auto path = std::filesystem::temp_directory_path() / ("tessera-test-" + name);
  std::filesystem::remove_all(path);
  std::filesystem::create_directories(path);
  return path;
}

CommandRun run_tessera(const std::string& arguments, const std::filesystem::path& folder) {
  std::filesystem::path log = folder / "command-output.txt";
  std::string command = "cd '" + folder.string() + "' && '" + tessera_binary().string() + "' " + arguments + " > '" +
                        log.string() + "' 2>&1 < /dev/null";
  int status = std::system(command.c_str());
  CommandRun run;
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  std::ifstream in(log);
  std::stringstream text;
  text << in.rdbuf();
  run.output = text.str();
  return run;
}

float uniform_at(std::uint64_t seed, std::uint64_t index, float lo, float hi) {
  std::uint64_t z = seed * 0x9E3779B97F4A7C15ull + index + 1;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  // 24 high bits -> [0,1) exactly representable in float.
  float unit = float(z >> 40) / float(1 << 24);
  return lo + (hi - lo) * unit;
}

std::vector<float> uniform_vector(std::uint64_t seed, std::size_t count, float lo, float hi) {
  std::vector<float> values(count);
  for (std::size_t i = 0; i < count; ++i) values[i] = uniform_at(seed, i, lo, hi);
  return values;
}

GradientAgreement compare_gradients(const std::vector<float>& reference, const std::vector<float>& other) {
  double dot = 0.0, norm_reference = 0.0, norm_other = 0.0;
  for (std::size_t i = 0; i < reference.size() && i < other.size(); ++i) {
    dot += double(reference[i]) * other[i];
    norm_reference += double(reference[i]) * reference[i];
    norm_other += double(other[i]) * other[i];
  }
  GradientAgreement agreement;
  agreement.cosine = dot / std::sqrt(norm_reference * norm_other);
  agreement.norm_relative = std::abs(std::sqrt(norm_other) - std::sqrt(norm_reference)) / std::sqrt(norm_reference);
  return agreement;
}

}  // namespace tessera::testing
