// tessera's HDF5 weight file (layout in include/tessera/io/weights_file.hpp),
// through HDF5's C API with every status checked (common/hdf5_file.hpp).
#include "tessera/io/weights_file.hpp"

#include <algorithm>
#include <charconv>
#include <map>
#include <utility>

#include "common/atomic_file.hpp"
#include "common/hdf5_file.hpp"
#include "tessera/error.hpp"
#include "tessera/model.hpp"

namespace tessera::io {
namespace {

using namespace detail;

constexpr int max_convolutions = 1000;
constexpr const char* weight_file_kind = "tessera weight file";

// --- writing

std::string conv_group_name(std::size_t position, const std::string& conv_name) {
  std::string number = std::to_string(position);
  if (number.size() < 2) number.insert(0, 2 - number.size(), '0');
  return number + "_" + conv_name;
}

void write_file(const H5File& file, const WeightSet& weights) {
  H5Handle access = TESSERA_H5_OWN(file, H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  // The 1.8+ format: checksummed superblock and object headers.
  TESSERA_H5(file, H5Pset_libver_bounds(access, H5F_LIBVER_V18, H5F_LIBVER_LATEST));
  H5Handle handle =
      TESSERA_H5_OWN(file, H5Fcreate(file.path().c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, access), H5Fclose);
  {
    write_string_attribute(file, handle, "format", weight_file_format);
    write_int_attribute(file, handle, "format_version", weight_file_version);
    write_string_attribute(file, handle, "architecture", weights.architecture);
    write_int_attribute(file, handle, "conv_count", int(weights.convs.size()));
    float matrix[9];
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 3; ++c) matrix[r * 3 + c] = weights.input.matrix[r][c];
    write_float_attribute(file, handle, "input_matrix", {3, 3}, matrix);
    write_float_attribute(file, handle, "input_bias", {3}, weights.input.bias.data());

    H5Handle provenance = TESSERA_H5_OWN(
        file, H5Gcreate2(handle, "provenance", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
    for (const auto& [key, value] : weights.provenance) {
      if (key.empty() || key.find('/') != std::string::npos || key == ".")
        fail("cannot write provenance key '", key, "' to '", file.path().string(), "'");
      write_string_attribute(file, provenance, key, value);
    }

    H5Handle convs =
        TESSERA_H5_OWN(file, H5Gcreate2(handle, "convs", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
    for (std::size_t i = 0; i < weights.convs.size(); ++i) {
      const ConvWeights& conv = weights.convs[i];
      std::string group_name = conv_group_name(i, conv.name);
      H5Handle group = TESSERA_H5_OWN(
          file, H5Gcreate2(convs, group_name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
      write_float_dataset(file, group, "weight",
                          {hsize_t(conv.out_channels), hsize_t(conv.in_channels), hsize_t(conv.kernel_h),
                           hsize_t(conv.kernel_w)},
                          conv.weight.data());
      write_float_dataset(file, group, "bias", {hsize_t(conv.out_channels)}, conv.bias.data());
    }
  }
  TESSERA_H5(file, H5Fflush(handle, H5F_SCOPE_GLOBAL));
  TESSERA_H5(file, handle.close());
}

// --- reading

struct AttributeNames {
  std::vector<std::string> names;
};

herr_t collect_attribute_name(hid_t, const char* name, const H5A_info_t*, void* data) {
  static_cast<AttributeNames*>(data)->names.emplace_back(name);
  return 0;
}

// The subgroups of /convs in network order, checked to be 00.., 01.., ...
std::vector<std::pair<std::string, std::string>> conv_groups(const H5File& file, hid_t convs) {
  H5G_info_t info;
  TESSERA_H5(file, H5Gget_info(convs, &info));
  if (info.nlinks > hsize_t(max_convolutions)) file.invalid("/convs holds ", info.nlinks, " entries");
  std::map<int, std::pair<std::string, std::string>> by_position;  // position -> (group, conv name)
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    ssize_t length = TESSERA_H5(
        file, H5Lget_name_by_idx(convs, ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT));
    std::string group(std::size_t(length) + 1, '\0');
    TESSERA_H5(file, H5Lget_name_by_idx(convs, ".", H5_INDEX_NAME, H5_ITER_INC, i, group.data(), group.size(),
                                        H5P_DEFAULT));
    group.resize(std::size_t(length));
    std::size_t underscore = group.find('_');
    int position = -1;
    if (underscore != std::string::npos && underscore > 0) {
      auto [end, ec] = std::from_chars(group.data(), group.data() + underscore, position);
      if (ec != std::errc() || end != group.data() + underscore) position = -1;
    }
    if (position < 0 || underscore + 1 >= group.size())
      file.invalid("/convs/", group, " is not named <position>_<layer>");
    if (!by_position.emplace(position, std::pair{group, group.substr(underscore + 1)}).second)
      file.invalid("two convolutions at position ", position);
  }
  std::vector<std::pair<std::string, std::string>> ordered;
  for (const auto& [position, names] : by_position) {
    if (position != int(ordered.size())) file.invalid("convolution position ", ordered.size(), " is missing");
    ordered.push_back(names);
  }
  return ordered;
}

WeightSet read_file(const H5File& file, bool load_data) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file.path(), ec)) fail("weight file '", file.path().string(), "' not found");
  if (TESSERA_H5(file, H5Fis_hdf5(file.path().c_str())) <= 0)
    file.invalid("it is not an HDF5 file (import .caffemodel and .pth files with 'tessera models import')");
  H5Handle handle = TESSERA_H5_OWN(file, H5Fopen(file.path().c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);

  WeightSet weights;
  expect_format(file, handle, weight_file_format);
  int version = read_int_attribute(file, handle, "format_version");
  if (version != weight_file_version)
    file.invalid("format_version is ", version, "; this tessera reads version ", weight_file_version);
  weights.architecture = read_string_attribute(file, handle, "architecture");
  int declared_count = read_int_attribute(file, handle, "conv_count");
  float matrix[9];
  read_float_attribute(file, handle, "input_matrix", {3, 3}, matrix);
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) weights.input.matrix[r][c] = matrix[r * 3 + c];
  read_float_attribute(file, handle, "input_bias", {3}, weights.input.bias.data());

  if (TESSERA_H5(file, H5Lexists(handle, "provenance", H5P_DEFAULT)) > 0) {
    H5Handle provenance = TESSERA_H5_OWN(file, H5Gopen2(handle, "provenance", H5P_DEFAULT), H5Gclose);
    AttributeNames names;
    TESSERA_H5(file, H5Aiterate2(provenance, H5_INDEX_NAME, H5_ITER_INC, nullptr, collect_attribute_name, &names));
    for (const auto& key : names.names)
      weights.provenance[key] = read_string_attribute(file, provenance, key.c_str());
  }

  if (TESSERA_H5(file, H5Lexists(handle, "convs", H5P_DEFAULT)) <= 0) file.invalid("the /convs group is missing");
  H5Handle convs = TESSERA_H5_OWN(file, H5Gopen2(handle, "convs", H5P_DEFAULT), H5Gclose);
  auto groups = conv_groups(file, convs);
  if (int(groups.size()) != declared_count)
    file.invalid("conv_count says ", declared_count, " but /convs holds ", groups.size());
  for (const auto& [group_name, conv_name] : groups) {
    H5Handle group = TESSERA_H5_OWN(file, H5Gopen2(convs, group_name.c_str(), H5P_DEFAULT), H5Gclose);
    ConvWeights conv;
    conv.name = conv_name;
    std::string what = "/convs/" + group_name;
    auto dims = read_float_dataset(file, group, "weight", 4, what + "/weight", load_data ? &conv.weight : nullptr);
    conv.out_channels = int(dims[0]);
    conv.in_channels = int(dims[1]);
    conv.kernel_h = int(dims[2]);
    conv.kernel_w = int(dims[3]);
    auto bias_dims = read_float_dataset(file, group, "bias", 1, what + "/bias", load_data ? &conv.bias : nullptr);
    if (bias_dims[0] != dims[0])
      file.invalid(what, " has ", bias_dims[0], " biases for ", dims[0], " output channels");
    weights.convs.push_back(std::move(conv));
  }
  TESSERA_H5(file, handle.close());
  return weights;
}

}  // namespace

WeightSet read_weights(const std::filesystem::path& path) {
  H5File file(path, weight_file_kind);
  WeightSet weights = read_file(file, true);
  try {
    validate_weights(architecture(weights.architecture), weights);
  } catch (const Error& error) {
    file.invalid(error.what());
  }
  return weights;
}

void write_weights(const std::filesystem::path& path, const WeightSet& weights) {
  validate_weights(architecture(weights.architecture), weights);
  TemporaryFile temporary(path);
  write_file(H5File(temporary.path(), weight_file_kind), weights);
  temporary.commit(path, "weight file");
}

std::vector<WeightFileSummary> list_weight_files(const std::filesystem::path& folder) {
  std::error_code ec;
  std::filesystem::directory_iterator entries(folder, ec);
  if (ec) fail("cannot list the weight folder '", folder.string(), "': ", ec.message());
  std::vector<WeightFileSummary> summaries;
  for (const auto& entry : entries) {
    if (!entry.is_regular_file(ec) || entry.path().extension() != weight_file_extension) continue;
    if (entry.path().filename().string().starts_with(".")) continue;  // in-progress writes
    WeightFileSummary summary;
    summary.name = entry.path().stem().string();
    summary.path = entry.path();
    summary.size_bytes = entry.file_size(ec);
    try {
      WeightSet weights = read_file(H5File(entry.path(), weight_file_kind), false);
      summary.architecture = weights.architecture;
      summary.conv_count = int(weights.convs.size());
      if (!weights.convs.empty()) summary.deepest_conv = weights.convs.back().name;
      if (auto it = weights.provenance.find("source_file"); it != weights.provenance.end())
        summary.source = it->second;
    } catch (const Error& error) {
      summary.problem = error.what();
    }
    summaries.push_back(std::move(summary));
  }
  std::sort(summaries.begin(), summaries.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  return summaries;
}

}  // namespace tessera::io
