#include "backends/cuda_registration.hpp"
#include "tessera/backend.hpp"
#include "tessera/error.hpp"

namespace tessera {

namespace cpu {
std::unique_ptr<Backend> make_cpu_backend();
}

std::vector<std::string> available_backends() {
  if (cuda::compiled()) return {"cpu", "cuda"};
  return {"cpu"};
}

std::string resolve_backend(const std::string& name) {
  if (name != "auto") return name;
  std::string why_none;
  return cuda::usable_device_count(why_none) > 0 ? "cuda" : "cpu";
}

Precision choose_precision(const std::string& requested, const std::string& backend, int width, int height) {
  if (requested != "auto") return parse_precision(requested);
  const bool four_k = double(width) * height >= 3840.0 * 2160.0;
  return resolve_backend(backend) == "cuda" && four_k ? Precision::bf16 : Precision::f32;
}

std::unique_ptr<Backend> make_backend(const std::string& name) {
  if (name == "cpu") return cpu::make_cpu_backend();
  if (name == "cuda") return cuda::make_cuda_backend();
  if (name == "auto") {
    // A GPU when this process has one; the CPU everywhere else (CI included).
    std::string why_none;
    if (cuda::usable_device_count(why_none) > 0) return cuda::make_cuda_backend();
    return cpu::make_cpu_backend();
  }
  std::string names;
  for (const auto& n : available_backends()) names += n + ", ";
  fail("unknown backend '", name, "' (available: ", names, "auto)");
}

}  // namespace tessera
