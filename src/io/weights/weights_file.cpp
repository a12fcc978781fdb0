// tessera's HDF5 weight file (layout in include/tessera/io/weights_file.hpp),
// through HDF5's C API. Every call's status is checked; a failure becomes a
// tessera::Error naming the call, the file and HDF5's own message, which is
// collected from its error stack (automatic printing is switched off).
#include "tessera/io/weights_file.hpp"

#include <fcntl.h>
#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <map>
#include <sstream>
#include <utility>

#include "tessera/error.hpp"
#include "tessera/model.hpp"

namespace tessera::io {
namespace {

// Limits that no real backbone comes near; they stop a corrupt header from
// asking for absurd allocations.
constexpr hsize_t max_dimension = hsize_t(1) << 20;
constexpr hsize_t max_elements = hsize_t(1) << 31;
constexpr std::size_t max_string_bytes = std::size_t(1) << 20;
constexpr int max_convolutions = 1000;

// HDF5's error stack, most specific entry first, as one line.
herr_t collect_error(unsigned, const H5E_error2_t* entry, void* data) {
  auto* lines = static_cast<std::vector<std::string>*>(data);
  std::string line = entry->desc ? entry->desc : "";
  char minor[256] = {0};
  if (H5Eget_msg(entry->min_num, nullptr, minor, sizeof minor) > 0 && line.find(minor) == std::string::npos)
    line += line.empty() ? std::string(minor) : " [" + std::string(minor) + "]";
  if (!line.empty() && std::find(lines->begin(), lines->end(), line) == lines->end()) lines->push_back(line);
  return 0;
}

std::string hdf5_error_text() {
  std::vector<std::string> lines;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, collect_error, &lines);
  H5Eclear2(H5E_DEFAULT);
  if (lines.empty()) return "no message from HDF5";
  std::string text = lines.front();
  if (lines.size() > 1) text += "; " + lines.back();
  return text;
}

// "H5Dread(dataset, ...)" -> "H5Dread"
std::string call_name(const char* expression) {
  std::string_view text(expression);
  return std::string(text.substr(0, text.find('(')));
}

// One open HDF5 object, closed by the matching H5*close when it goes.
class H5Handle {
 public:
  H5Handle() = default;
  H5Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  ~H5Handle() { reset(); }
  H5Handle(H5Handle&& other) noexcept
      : id_(std::exchange(other.id_, H5I_INVALID_HID)), close_(other.close_) {}
  H5Handle& operator=(H5Handle&& other) noexcept {
    if (this != &other) {
      reset();
      id_ = std::exchange(other.id_, H5I_INVALID_HID);
      close_ = other.close_;
    }
    return *this;
  }
  operator hid_t() const { return id_; }
  // Closes now, reporting failure (a file's close flushes it).
  herr_t close() {
    herr_t status = id_ >= 0 && close_ ? close_(id_) : 0;
    id_ = H5I_INVALID_HID;
    return status;
  }
  void reset() {
    if (id_ >= 0 && close_) close_(id_);  // errors on the way out of a failed operation are moot
    id_ = H5I_INVALID_HID;
  }

 private:
  hid_t id_ = H5I_INVALID_HID;
  herr_t (*close_)(hid_t) = nullptr;
};

// The file an operation works on, for messages; silences HDF5's printing.
class H5File {
 public:
  explicit H5File(std::filesystem::path path) : path_(std::move(path)) { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

  template <typename Status>
  Status check(Status status, const char* expression) const {
    if (status < 0)
      fail("HDF5 call ", call_name(expression), " failed for '", path_.string(), "': ", hdf5_error_text());
    return status;
  }
  H5Handle own(hid_t id, herr_t (*close)(hid_t), const char* expression) const {
    check(id, expression);
    return H5Handle(id, close);
  }
  template <typename... Parts>
  [[noreturn]] void invalid(Parts&&... parts) const {
    fail("'", path_.string(), "' is not a valid tessera weight file: ", std::forward<Parts>(parts)...);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

#define TESSERA_H5(file, call) (file).check((call), #call)
#define TESSERA_H5_OWN(file, call, close) (file).own((call), (close), #call)

// --- writing

void write_string_attribute(const H5File& file, hid_t location, const std::string& name, const std::string& value) {
  H5Handle type = TESSERA_H5_OWN(file, H5Tcopy(H5T_C_S1), H5Tclose);
  TESSERA_H5(file, H5Tset_size(type, std::max<std::size_t>(value.size(), 1)));
  TESSERA_H5(file, H5Tset_strpad(type, H5T_STR_NULLPAD));
  TESSERA_H5(file, H5Tset_cset(type, H5T_CSET_UTF8));
  H5Handle space = TESSERA_H5_OWN(file, H5Screate(H5S_SCALAR), H5Sclose);
  H5Handle attribute =
      TESSERA_H5_OWN(file, H5Acreate2(location, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  std::string padded = value.empty() ? std::string(1, '\0') : value;
  TESSERA_H5(file, H5Awrite(attribute, type, padded.data()));
}

void write_int_attribute(const H5File& file, hid_t location, const char* name, int value) {
  H5Handle space = TESSERA_H5_OWN(file, H5Screate(H5S_SCALAR), H5Sclose);
  H5Handle attribute =
      TESSERA_H5_OWN(file, H5Acreate2(location, name, H5T_STD_I32LE, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  TESSERA_H5(file, H5Awrite(attribute, H5T_NATIVE_INT, &value));
}

void write_float_attribute(const H5File& file, hid_t location, const char* name, const std::vector<hsize_t>& dims,
                           const float* values) {
  H5Handle space = TESSERA_H5_OWN(file, H5Screate_simple(int(dims.size()), dims.data(), nullptr), H5Sclose);
  H5Handle attribute =
      TESSERA_H5_OWN(file, H5Acreate2(location, name, H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  TESSERA_H5(file, H5Awrite(attribute, H5T_NATIVE_FLOAT, values));
}

void write_float_dataset(const H5File& file, hid_t location, const char* name, const std::vector<hsize_t>& dims,
                         const std::vector<float>& values) {
  H5Handle space = TESSERA_H5_OWN(file, H5Screate_simple(int(dims.size()), dims.data(), nullptr), H5Sclose);
  // One chunk per dataset, so that the Fletcher-32 filter can checksum it.
  H5Handle properties = TESSERA_H5_OWN(file, H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  TESSERA_H5(file, H5Pset_chunk(properties, int(dims.size()), dims.data()));
  TESSERA_H5(file, H5Pset_fletcher32(properties));
  H5Handle dataset = TESSERA_H5_OWN(
      file, H5Dcreate2(location, name, H5T_IEEE_F32LE, space, H5P_DEFAULT, properties, H5P_DEFAULT), H5Dclose);
  TESSERA_H5(file, H5Dwrite(dataset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()));
}

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
                          conv.weight);
      write_float_dataset(file, group, "bias", {hsize_t(conv.out_channels)}, conv.bias);
    }
  }
  TESSERA_H5(file, H5Fflush(handle, H5F_SCOPE_GLOBAL));
  TESSERA_H5(file, handle.close());
}

// --- reading

bool has_attribute(const H5File& file, hid_t location, const char* name) {
  return TESSERA_H5(file, H5Aexists(location, name)) > 0;
}

std::string read_string_attribute(const H5File& file, hid_t location, const char* name) {
  if (!has_attribute(file, location, name)) file.invalid("attribute '", name, "' is missing");
  H5Handle attribute = TESSERA_H5_OWN(file, H5Aopen(location, name, H5P_DEFAULT), H5Aclose);
  H5Handle type = TESSERA_H5_OWN(file, H5Aget_type(attribute), H5Tclose);
  if (TESSERA_H5(file, H5Tget_class(type)) != H5T_STRING) file.invalid("attribute '", name, "' is not a string");
  H5Handle space = TESSERA_H5_OWN(file, H5Aget_space(attribute), H5Sclose);
  if (TESSERA_H5(file, H5Sget_simple_extent_type(space)) != H5S_SCALAR)
    file.invalid("attribute '", name, "' is not a single string");
  H5Handle memory_type = TESSERA_H5_OWN(file, H5Tcopy(H5T_C_S1), H5Tclose);
  // HDF5 converts between strings only of the same character set.
  TESSERA_H5(file, H5Tset_cset(memory_type, TESSERA_H5(file, H5Tget_cset(type))));
  if (TESSERA_H5(file, H5Tis_variable_str(type)) > 0) {
    TESSERA_H5(file, H5Tset_size(memory_type, H5T_VARIABLE));
    char* text = nullptr;
    TESSERA_H5(file, H5Aread(attribute, memory_type, &text));
    std::string value = text ? text : "";
    H5free_memory(text);
    return value;
  }
  std::size_t size = H5Tget_size(type);
  if (size == 0 || size > max_string_bytes) file.invalid("attribute '", name, "' has a string size of ", size);
  // Read the stored bytes as they are (no padding conversion), up to the first NUL.
  std::string value(size, '\0');
  TESSERA_H5(file, H5Aread(attribute, type, value.data()));
  value.resize(std::strlen(value.c_str()));
  return value;
}

int read_int_attribute(const H5File& file, hid_t location, const char* name) {
  if (!has_attribute(file, location, name)) file.invalid("attribute '", name, "' is missing");
  H5Handle attribute = TESSERA_H5_OWN(file, H5Aopen(location, name, H5P_DEFAULT), H5Aclose);
  H5Handle type = TESSERA_H5_OWN(file, H5Aget_type(attribute), H5Tclose);
  if (TESSERA_H5(file, H5Tget_class(type)) != H5T_INTEGER) file.invalid("attribute '", name, "' is not an integer");
  H5Handle space = TESSERA_H5_OWN(file, H5Aget_space(attribute), H5Sclose);
  if (TESSERA_H5(file, H5Sget_simple_extent_npoints(space)) != 1)
    file.invalid("attribute '", name, "' is not a single integer");
  int value = 0;
  TESSERA_H5(file, H5Aread(attribute, H5T_NATIVE_INT, &value));
  return value;
}

std::vector<hsize_t> extent(const H5File& file, hid_t space, const std::string& what) {
  int rank = TESSERA_H5(file, H5Sget_simple_extent_ndims(space));
  if (rank > 8) file.invalid(what, " has rank ", rank);
  std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
  TESSERA_H5(file, H5Sget_simple_extent_dims(space, dims.data(), nullptr));
  return dims;
}

void read_float_attribute(const H5File& file, hid_t location, const char* name, const std::vector<hsize_t>& dims,
                          float* out) {
  if (!has_attribute(file, location, name)) file.invalid("attribute '", name, "' is missing");
  H5Handle attribute = TESSERA_H5_OWN(file, H5Aopen(location, name, H5P_DEFAULT), H5Aclose);
  H5Handle type = TESSERA_H5_OWN(file, H5Aget_type(attribute), H5Tclose);
  if (TESSERA_H5(file, H5Tget_class(type)) != H5T_FLOAT) file.invalid("attribute '", name, "' is not floating point");
  H5Handle space = TESSERA_H5_OWN(file, H5Aget_space(attribute), H5Sclose);
  if (extent(file, space, name) != dims) file.invalid("attribute '", name, "' has the wrong shape");
  TESSERA_H5(file, H5Aread(attribute, H5T_NATIVE_FLOAT, out));
}

// Reads a float32 dataset of the expected rank; returns its dims and, when
// `values` is given, its data.
std::vector<hsize_t> read_float_dataset(const H5File& file, hid_t location, const char* name, int rank,
                                        const std::string& what, std::vector<float>* values) {
  if (TESSERA_H5(file, H5Lexists(location, name, H5P_DEFAULT)) <= 0) file.invalid(what, " is missing");
  H5Handle dataset = TESSERA_H5_OWN(file, H5Dopen2(location, name, H5P_DEFAULT), H5Dclose);
  H5Handle type = TESSERA_H5_OWN(file, H5Dget_type(dataset), H5Tclose);
  if (TESSERA_H5(file, H5Tget_class(type)) != H5T_FLOAT || H5Tget_size(type) != 4)
    file.invalid(what, " is not float32");
  H5Handle space = TESSERA_H5_OWN(file, H5Dget_space(dataset), H5Sclose);
  auto dims = extent(file, space, what);
  if (int(dims.size()) != rank) file.invalid(what, " has rank ", dims.size(), ", expected ", rank);
  hsize_t count = 1;
  for (hsize_t dim : dims) {
    if (dim == 0 || dim > max_dimension) file.invalid(what, " has a dimension of ", dim);
    count *= dim;
    if (count > max_elements) file.invalid(what, " is too large");
  }
  if (values) {
    values->assign(std::size_t(count), 0.0f);
    TESSERA_H5(file, H5Dread(dataset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values->data()));
  }
  return dims;
}

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
  if (!has_attribute(file, handle, "format") || read_string_attribute(file, handle, "format") != weight_file_format)
    file.invalid("the format attribute is not '", weight_file_format, "'");
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

// Removes the temporary file unless the write got as far as renaming it.
class TemporaryFile {
 public:
  explicit TemporaryFile(std::filesystem::path path) : path_(std::move(path)) {}
  ~TemporaryFile() {
    if (!committed_) {
      std::error_code ignored;
      std::filesystem::remove(path_, ignored);
    }
  }
  const std::filesystem::path& path() const { return path_; }
  void commit() { committed_ = true; }

 private:
  std::filesystem::path path_;
  bool committed_ = false;
};

void sync_to_disk(const std::filesystem::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("cannot reopen '", path.string(), "' to flush it: ", std::strerror(errno));
  int status = ::fsync(fd);
  int saved = errno;
  ::close(fd);
  if (status != 0) fail("fsync of '", path.string(), "' failed: ", std::strerror(saved));
}

}  // namespace

WeightSet read_weights(const std::filesystem::path& path) {
  H5File file(path);
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
  std::filesystem::path folder = path.parent_path().empty() ? std::filesystem::path(".") : path.parent_path();
  TemporaryFile temporary(folder / ("." + path.filename().string() + ".tmp-" + std::to_string(::getpid())));
  write_file(H5File(temporary.path()), weights);
  sync_to_disk(temporary.path());
  std::error_code ec;
  std::filesystem::rename(temporary.path(), path, ec);
  if (ec) fail("cannot move the new weight file into place at '", path.string(), "': ", ec.message());
  temporary.commit();
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
      WeightSet weights = read_file(H5File(entry.path()), false);
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
