// Every call into CUDA, cuDNN, cuBLAS, NCCL, MPI, oneDNN and HDF5 is checked
// through this one generator: a failure becomes a tessera::Error that names
// the library, the call, the source line that made it, and the library's own
// words. Each library describes itself in a small traits struct beside the
// code that uses it:
//
//   struct Mpi {                              // a library that returns a status
//     static constexpr const char* name = "MPI";
//     static bool ok(int status);
//     static std::string describe(int status);
//   };
//   struct Dnnl {                             // a library that throws
//     static constexpr const char* name = "oneDNN";
//     using exception = dnnl::error;
//     static std::string describe(const dnnl::error& e);
//   };
//
//   TESSERA_CHECK(Mpi, MPI_Barrier(comm));                 // returns the status
//   TESSERA_CHECK_THROWING(Dnnl, "reorder", [&] { ... });  // returns the lambda's value
#pragma once

#include <string>
#include <string_view>
#include <utility>

#include "tessera/error.hpp"

namespace tessera {

// "src/backends/cpu/cpu_layers.cpp" of a compiler's full path: enough to find
// the line, without the build machine's folders.
constexpr std::string_view source_name(std::string_view file) {
  const auto at = file.rfind("src/");
  return at == std::string_view::npos ? file : file.substr(at);
}

// The one wording of a failed library call.
[[noreturn]] inline void fail_call(const char* library, std::string_view call, const char* file, int line,
                                   const std::string& detail) {
  fail(library, " call ", std::string(call), " failed at ", std::string(source_name(file)), ":", line, ": ", detail);
}

template <typename Library, typename Status>
Status checked_status(Status status, const char* call, const char* file, int line) {
  if (!Library::ok(status)) fail_call(Library::name, call, file, line, Library::describe(status));
  return status;
}

template <typename Library, typename Call>
auto checked_throwing(const char* what, const char* file, int line, Call&& call) -> decltype(call()) {
  try {
    return std::forward<Call>(call)();
  } catch (const typename Library::exception& e) {
    fail_call(Library::name, what, file, line, Library::describe(e));
  }
}

}  // namespace tessera

#define TESSERA_CHECK(Library, call) ::tessera::checked_status<Library>((call), #call, __FILE__, __LINE__)
#define TESSERA_CHECK_THROWING(Library, what, ...) \
  ::tessera::checked_throwing<Library>((what), __FILE__, __LINE__, __VA_ARGS__)
