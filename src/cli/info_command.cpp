#include <H5public.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <mpi.h>
#include <oneapi/dnnl/dnnl.hpp>

#include <OpenImageIO/oiioversion.h>

#include "cli/commands.hpp"
#include "render/job/weights_lookup.hpp"
#include "tessera/backend.hpp"
#include "tessera/build_info.hpp"
#include "tessera/error.hpp"

namespace tessera::cli {

Command add_info_command(CLI::App& app) {
  auto* command = app.add_subcommand("info", "Version, backends, devices, and the libraries in this build");
  return [command] {
    (void)command;
    fmt::print("tessera {} ({} build, {})\n", build_info::version, build_info::build_type, build_info::compiler);
    std::string names;
    for (const auto& name : available_backends()) names += (names.empty() ? "" : ", ") + name;
    fmt::print("backends: {}\n", names);
    for (const auto& name : available_backends()) {
      // A backend compiled in but without its device here (CUDA on a
      // machine with no GPU or driver) is listed with the reason.
      try {
        auto backend = make_backend(name);
        for (const auto& line : backend->describe()) fmt::print("  {}\n", line);
      } catch (const Error& e) {
        fmt::print("  {}: unavailable: {}\n", name, e.what());
      }
    }
    char mpi_version[MPI_MAX_LIBRARY_VERSION_STRING] = {};
    int length = 0;
    if (MPI_Get_library_version(mpi_version, &length) == MPI_SUCCESS) {
      std::string text(mpi_version, length);
      fmt::print("MPI: {}\n", text.substr(0, text.find_first_of(",\n")));
    }
    unsigned major = 0, minor = 0, release = 0;
    H5get_libversion(&major, &minor, &release);
#ifdef H5_HAVE_PARALLEL
    const char* flavour = "parallel";
#else
    const char* flavour = "serial";
#endif
    fmt::print("HDF5: {}.{}.{} ({})\n", major, minor, release, flavour);
    fmt::print("OpenImageIO: {}\n", OIIO_VERSION_STRING);
    std::vector<std::string> folders;
    for (const auto& folder : job::weights_search_folders()) folders.push_back(folder.string());
    fmt::print("weights folders (searched in order; import writes to the first): {}\n", fmt::join(folders, ", "));
    return 0;
  };
}

}  // namespace tessera::cli
