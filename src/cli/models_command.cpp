// `tessera models import FILE -o OUT.h5` and `tessera models list`.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <filesystem>

#include "cli/commands.hpp"
#include "render/job/weights_lookup.hpp"
#include "tessera/error.hpp"
#include "tessera/io/import.hpp"
#include "tessera/io/weights_file.hpp"
#include "tessera/model.hpp"

namespace tessera::cli {

using job::default_weights_folder;

namespace {

struct ImportArguments {
  std::string source;
  std::string output;
  std::string architecture;
  std::string map;
  std::string input;
};

int run_import(const ImportArguments& a) {
  io::ImportOptions options;
  options.architecture = a.architecture;
  if (!a.map.empty()) options.key_map = io::ImportOptions::parse_map(a.map);
  if (a.input == "caffe") options.input = ColorTransform::caffe();
  else if (a.input == "torchvision") options.input = ColorTransform::torchvision();
  else if (!a.input.empty()) fail("--input must be caffe or torchvision, got '", a.input, "'");

  if (!a.output.empty()) {
    const std::filesystem::path folder = std::filesystem::path(a.output).parent_path();
    if (!folder.empty() && !std::filesystem::is_directory(folder))
      fail("-o ", a.output, ": the folder '", folder.string(), "' does not exist");
    if (std::filesystem::is_directory(a.output)) fail("-o ", a.output, ": it is a folder; name the .h5 file to write");
  }
  io::ImportResult result = io::import_weights(a.source, options);
  for (const auto& note : result.notes) spdlog::info("{}", note);
  std::filesystem::path output = a.output;
  if (output.empty()) {
    std::filesystem::create_directories(default_weights_folder());
    output = std::filesystem::path(default_weights_folder()) /
             (std::filesystem::path(a.source).stem().string() + ".h5");
  }
  io::write_weights(output, result.weights);
  const Architecture& arch = architecture(result.weights.architecture);
  fmt::print("imported {} -> {}: {} with {} convolutions ({} .. {}), deepest layer {}\n", a.source,
             output.string(), result.weights.architecture, result.weights.convs.size(),
             result.weights.convs.front().name, result.weights.convs.back().name,
             deepest_available_layer(arch, result.weights));
  return 0;
}

int run_list(const std::string& folder) {
  if (!std::filesystem::is_directory(folder)) {
    fmt::print("no weights folder '{}' (import with 'tessera models import FILE')\n", folder);
    return 0;
  }
  auto files = io::list_weight_files(folder);
  if (files.empty()) {
    fmt::print("no weights in '{}' (import with 'tessera models import FILE')\n", folder);
    return 0;
  }
  fmt::print("{:<24} {:<6} {:>5} {:<12} {:>10}  {}\n", "name", "model", "convs", "deepest", "MiB", "source");
  for (const auto& f : files) {
    if (!f.problem.empty()) {
      fmt::print("{:<24} unreadable: {}\n", f.name, f.problem);
      continue;
    }
    // The deepest layer a render can use, named as import and render name it.
    std::string deepest = f.deepest_conv;
    try {
      WeightSet counted;
      counted.convs.resize(std::size_t(f.conv_count));
      deepest = deepest_available_layer(architecture(f.architecture), counted);
    } catch (const Error&) {
    }
    fmt::print("{:<24} {:<6} {:>5} {:<12} {:>10.1f}  {}\n", f.name, f.architecture, f.conv_count, deepest,
               double(f.size_bytes) / (1024.0 * 1024.0), f.source);
  }
  return 0;
}

}  // namespace

Command add_models_command(CLI::App& app) {
  auto* command = app.add_subcommand("models", "Import and list backbone weights");
  command->require_subcommand(1);
  auto import_args = std::make_shared<ImportArguments>();
  auto* import = command->add_subcommand(
      "import", "Convert a .caffemodel or .pth (zip or legacy) into tessera's HDF5 weights");
  import->add_option("file", import_args->source, "The weight file to convert")->required();
  import->add_option("-o,--output", import_args->output, "Output .h5 (default: the weights folder)");
  import->add_option("--arch", import_args->architecture, "vgg19, vgg16 or nin (default: inferred)");
  import->add_option("--map", import_args->map,
                     "Key map for .pth files: conv2=conv1_1,... ('input' folds a 1x1 colour conv)");
  import->add_option("--input", import_args->input, "Input convention: caffe or torchvision (default: by format)");

  auto list_folder = std::make_shared<std::string>(default_weights_folder());
  auto* list = command->add_subcommand("list", "List imported weights");
  list->add_option("--dir", *list_folder, "Folder to list")->capture_default_str();

  return [import, list, import_args, list_folder]() -> int {
    if (import->parsed()) return run_import(*import_args);
    if (list->parsed()) return run_list(*list_folder);
    return 1;
  };
}

}  // namespace tessera::cli
