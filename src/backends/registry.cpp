#include "tessera/backend.hpp"
#include "tessera/error.hpp"

namespace tessera {

namespace cpu {
std::unique_ptr<Backend> make_cpu_backend();
}

std::vector<std::string> available_backends() { return {"cpu"}; }

std::unique_ptr<Backend> make_backend(const std::string& name) {
  if (name == "cpu" || name == "auto") return cpu::make_cpu_backend();
  if (name == "cuda") fail("backend 'cuda' is not compiled into this build (available: cpu)");
  fail("unknown backend '", name, "' (available: cpu, auto)");
}

}  // namespace tessera
