#include "common/hdf5_file.hpp"

#include <algorithm>
#include <cstring>

namespace tessera::io::detail {
namespace {

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

}  // namespace

std::string hdf5_error_text() {
  std::vector<std::string> lines;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, collect_error, &lines);
  H5Eclear2(H5E_DEFAULT);
  if (lines.empty()) return "no message from HDF5";
  std::string text = lines.front();
  if (lines.size() > 1) text += "; " + lines.back();
  return text;
}

std::string call_name(const char* expression) {
  std::string_view text(expression);
  return std::string(text.substr(0, text.find('(')));
}

void H5File::fail_call(const std::string& call, const char* source, int line) const {
  const std::string hdf5_text = hdf5_error_text();
  // "truncated file: eof = 3000, sblock->base_addr = 0, stored_eof = 170658"
  if (call == "H5Fopen" && hdf5_text.find("truncated file") != std::string::npos) {
    auto number_after = [&](const std::string& key) -> std::string {
      auto at = hdf5_text.find(key);
      if (at == std::string::npos) return "?";
      at += key.size();
      auto end = hdf5_text.find_first_not_of("0123456789", at);
      return hdf5_text.substr(at, end - at);
    };
    invalid("it is cut short (", number_after("eof = "), " of ", number_after("stored_eof = "),
            " bytes): an interrupted copy or download?");
  }
  std::string detail = "'";
  for (const std::string& part : {path_.string(), std::string("': "), hdf5_text}) detail += part;
  ::tessera::fail_call("HDF5", call, source, line, detail);
}

H5File::H5File(std::filesystem::path path, std::string kind) : path_(std::move(path)), kind_(std::move(kind)) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}

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
                         const float* values, std::vector<hsize_t> chunk) {
  H5Handle space = TESSERA_H5_OWN(file, H5Screate_simple(int(dims.size()), dims.data(), nullptr), H5Sclose);
  if (chunk.empty()) chunk = dims;
  H5Handle properties = TESSERA_H5_OWN(file, H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  TESSERA_H5(file, H5Pset_chunk(properties, int(chunk.size()), chunk.data()));
  TESSERA_H5(file, H5Pset_fletcher32(properties));
  H5Handle dataset = TESSERA_H5_OWN(
      file, H5Dcreate2(location, name, H5T_IEEE_F32LE, space, H5P_DEFAULT, properties, H5P_DEFAULT), H5Dclose);
  TESSERA_H5(file, H5Dwrite(dataset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values));
}

// --- reading

void expect_format(const H5File& file, hid_t root, const std::string& expected) {
  if (!has_attribute(file, root, "format"))
    file.invalid("it is an HDF5 file, but not one tessera wrote (no format attribute)");
  const std::string format = read_string_attribute(file, root, "format");
  if (format == expected) return;
  if (format == "tessera-weights") file.invalid("it is a weights file (--weights reads those)");
  if (format == "tessera-checkpoint") file.invalid("it is a render's checkpoint (--resume reads those)");
  file.invalid("its format is '", format, "', not '", expected, "'");
}

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

}  // namespace tessera::io::detail
