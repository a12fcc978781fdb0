// Private to src/io: HDF5's C API with every status checked. A failure
// becomes a tessera::Error naming the call, the file and HDF5's own message,
// collected from its error stack (automatic printing is switched off).
#pragma once

#include <hdf5.h>

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "tessera/checked_call.hpp"
#include "tessera/error.hpp"

namespace tessera::io::detail {

// HDF5's error stack, most specific entry first, as one line (and cleared).
std::string hdf5_error_text();
// "H5Dread(dataset, ...)" -> "H5Dread"
std::string call_name(const char* expression);

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
// `kind` names what the file should be ("tessera weight file").
class H5File {
 public:
  H5File(std::filesystem::path path, std::string kind);

  template <typename Status>
  Status check(Status status, const char* expression, const char* source, int line) const {
    if (status < 0) fail_call(call_name(expression), source, line);
    return status;
  }
  H5Handle own(hid_t id, herr_t (*close)(hid_t), const char* expression, const char* source, int line) const {
    check(id, expression, source, line);
    return H5Handle(id, close);
  }
  template <typename... Parts>
  [[noreturn]] void invalid(Parts&&... parts) const {
    fail("'", path_.string(), "' is not a valid ", kind_, ": ", std::forward<Parts>(parts)...);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  // What the user reads: the file and, for the failures a user can cause
  // (a file cut short), what happened in words; otherwise the call, its
  // source line and HDF5's own text, as for every library
  // (tessera/checked_call.hpp).
  [[noreturn]] void fail_call(const std::string& call, const char* source, int line) const;

  std::filesystem::path path_;
  std::string kind_;
};

#define TESSERA_H5(file, call) (file).check((call), #call, __FILE__, __LINE__)
#define TESSERA_H5_OWN(file, call, close) (file).own((call), (close), #call, __FILE__, __LINE__)

// Limits that no real file comes near; they stop a corrupt header from
// asking for absurd allocations.
inline constexpr hsize_t max_dimension = hsize_t(1) << 20;
inline constexpr hsize_t max_elements = hsize_t(1) << 31;
inline constexpr std::size_t max_string_bytes = std::size_t(1) << 24;

// --- writing
void write_string_attribute(const H5File& file, hid_t location, const std::string& name, const std::string& value);
void write_int_attribute(const H5File& file, hid_t location, const char* name, int value);
void write_float_attribute(const H5File& file, hid_t location, const char* name, const std::vector<hsize_t>& dims,
                           const float* values);
// A float32 dataset stored as chunks with HDF5's Fletcher-32 checksum, so
// that a flipped bit is reported on read instead of being used. `chunk`
// empty: one chunk for the whole dataset.
void write_float_dataset(const H5File& file, hid_t location, const char* name, const std::vector<hsize_t>& dims,
                         const float* values, std::vector<hsize_t> chunk = {});

// --- reading
// Checks the root's `format` attribute against `expected` ("tessera-weights",
// "tessera-checkpoint"); a file of tessera's other kind is named as such.
void expect_format(const H5File& file, hid_t root, const std::string& expected);
bool has_attribute(const H5File& file, hid_t location, const char* name);
std::string read_string_attribute(const H5File& file, hid_t location, const char* name);
int read_int_attribute(const H5File& file, hid_t location, const char* name);
std::vector<hsize_t> extent(const H5File& file, hid_t space, const std::string& what);
void read_float_attribute(const H5File& file, hid_t location, const char* name, const std::vector<hsize_t>& dims,
                          float* out);
// Reads a float32 dataset of the expected rank; returns its dims and, when
// `values` is given, its data.
std::vector<hsize_t> read_float_dataset(const H5File& file, hid_t location, const char* name, int rank,
                                        const std::string& what, std::vector<float>* values);

}  // namespace tessera::io::detail
