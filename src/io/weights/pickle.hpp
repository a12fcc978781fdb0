// A restricted reader for the pickles inside PyTorch .pth files.
//
// Python's pickle format is a small stack machine whose GLOBAL and REDUCE
// opcodes can call any importable function: loading an untrusted pickle with
// Python runs arbitrary code. This reader implements only the opcodes a
// torch.save()d state_dict of tensors uses (protocols 2 to 5) and knows a fixed
// list of globals: collections.OrderedDict, torch._utils._rebuild_tensor(_v2),
// torch._utils._rebuild_parameter and the torch.*Storage type names. REDUCE
// applies those by building plain values here; nothing is ever executed. Any
// other opcode or global is refused with an error naming it.
//
// Values live in an arena owned by the Document, so shared references (the
// memo) and even cycles cost nothing and are torn down without recursion.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tessera::io::pickle {

// A torch storage named by a persistent id:
//   ('storage', torch.<Type>Storage, key, location, numel[, view_metadata])
struct StorageRef {
  std::string type_name;  // "FloatStorage", "HalfStorage", ...
  std::string key;        // zip: data/<key>; legacy: the key in the storage list
  std::string location;   // "cpu", "cuda:0", ...
  std::int64_t numel = 0;  // elements in the (root) storage
  // Legacy files may name a view into a root storage: elements
  // [view_offset, view_offset + view_numel) of storage `key`.
  bool is_view = false;
  std::int64_t view_offset = 0;
  std::int64_t view_numel = 0;
};

// Bytes per element of a torch storage type, or 0 for an unknown name.
std::size_t storage_element_bytes(std::string_view type_name);

struct TensorRef {
  StorageRef storage;
  std::int64_t storage_offset = 0;  // in elements
  std::vector<std::int64_t> size;
  std::vector<std::int64_t> stride;
};

struct Value {
  enum class Kind {
    none, boolean, integer, big_integer, floating, string, bytes,
    tuple, list, dict, global, storage, tensor
  };
  Kind kind = Kind::none;
  bool boolean = false;
  std::int64_t integer = 0;
  double floating = 0.0;
  // string / bytes payload; big_integer: little-endian two's complement bytes;
  // global: "module.name".
  std::string text;
  std::vector<const Value*> items;                            // tuple, list
  std::vector<std::pair<const Value*, const Value*>> entries;  // dict, in insertion order
  StorageRef storage;
  TensorRef tensor;

  bool is_string() const { return kind == Kind::string; }
  // The entry whose key is the string `key`, or nullptr.
  const Value* find(std::string_view key) const;
};

const char* kind_name(Value::Kind kind);

class Document {
 public:
  const Value& root() const { return *root_; }
  // Offset just past the STOP opcode, relative to the start of the parsed bytes.
  std::size_t end_offset() const { return end_offset_; }
  // Every storage the pickle names (BINPERSID), in order of appearance.
  const std::vector<const Value*>& storages() const { return storages_; }

 private:
  friend class Parser;
  std::deque<Value> arena_;
  std::vector<const Value*> storages_;
  const Value* root_ = nullptr;
  std::size_t end_offset_ = 0;
};

struct Limits {
  std::size_t max_values = 4'000'000;      // objects one pickle may create
  std::size_t max_stack_depth = 1'000'000;  // entries on the stack
};

// Parses one pickle starting at bytes[0] and ending at its STOP opcode (bytes
// after it are left alone: legacy .pth files hold several pickles in a row).
// `what` names the input in error messages ("vgg_r31.pth, pickle 4").
// Throws tessera::Error on anything outside the supported subset, on any read
// past the end, and on inconsistent structure.
Document parse(std::span<const std::uint8_t> bytes, std::string_view what, const Limits& limits = {});

}  // namespace tessera::io::pickle
