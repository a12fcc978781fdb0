// The restricted pickle machine. Opcode numbers and argument encodings follow
// the pickle protocol as documented by Python (Lib/pickletools.py describes
// each opcode); the set of opcodes and globals was taken from dumping real
// torch.save() outputs (zip and legacy formats, torch 1.x) with pickletools.
#include "pickle.hpp"

#include <bit>
#include <cstring>
#include <sstream>
#include <unordered_map>

#include "tessera/error.hpp"

namespace tessera::io::pickle {

std::size_t storage_element_bytes(std::string_view type_name) {
  static const std::pair<std::string_view, std::size_t> sizes[] = {
      {"FloatStorage", 4},  {"DoubleStorage", 8},       {"HalfStorage", 2},
      {"BFloat16Storage", 2}, {"LongStorage", 8},       {"IntStorage", 4},
      {"ShortStorage", 2},  {"CharStorage", 1},         {"ByteStorage", 1},
      {"BoolStorage", 1},   {"ComplexFloatStorage", 8}, {"ComplexDoubleStorage", 16},
  };
  for (const auto& [name, bytes] : sizes)
    if (name == type_name) return bytes;
  return 0;
}

const Value* Value::find(std::string_view key) const {
  for (const auto& [k, v] : entries)
    if (k->kind == Kind::string && k->text == key) return v;
  return nullptr;
}

const char* kind_name(Value::Kind kind) {
  switch (kind) {
    case Value::Kind::none: return "None";
    case Value::Kind::boolean: return "bool";
    case Value::Kind::integer: return "int";
    case Value::Kind::big_integer: return "big int";
    case Value::Kind::floating: return "float";
    case Value::Kind::string: return "str";
    case Value::Kind::bytes: return "bytes";
    case Value::Kind::tuple: return "tuple";
    case Value::Kind::list: return "list";
    case Value::Kind::dict: return "dict";
    case Value::Kind::global: return "global";
    case Value::Kind::storage: return "storage";
    case Value::Kind::tensor: return "tensor";
  }
  return "?";
}

namespace {

// Names of every opcode of protocols 0-5, so that a refusal can say which one
// it met (a pickle written by something other than torch.save).
const char* opcode_name(std::uint8_t op) {
  switch (op) {
    case '(': return "MARK";
    case '.': return "STOP";
    case '0': return "POP";
    case '1': return "POP_MARK";
    case '2': return "DUP";
    case 'F': return "FLOAT";
    case 'I': return "INT";
    case 'J': return "BININT";
    case 'K': return "BININT1";
    case 'L': return "LONG";
    case 'M': return "BININT2";
    case 'N': return "NONE";
    case 'P': return "PERSID";
    case 'Q': return "BINPERSID";
    case 'R': return "REDUCE";
    case 'S': return "STRING";
    case 'T': return "BINSTRING";
    case 'U': return "SHORT_BINSTRING";
    case 'V': return "UNICODE";
    case 'X': return "BINUNICODE";
    case 'a': return "APPEND";
    case 'b': return "BUILD";
    case 'c': return "GLOBAL";
    case 'd': return "DICT";
    case '}': return "EMPTY_DICT";
    case 'e': return "APPENDS";
    case 'g': return "GET";
    case 'h': return "BINGET";
    case 'i': return "INST";
    case 'j': return "LONG_BINGET";
    case 'l': return "LIST";
    case ']': return "EMPTY_LIST";
    case 'o': return "OBJ";
    case 'p': return "PUT";
    case 'q': return "BINPUT";
    case 'r': return "LONG_BINPUT";
    case 's': return "SETITEM";
    case 't': return "TUPLE";
    case ')': return "EMPTY_TUPLE";
    case 'u': return "SETITEMS";
    case 'G': return "BINFLOAT";
    case 0x80: return "PROTO";
    case 0x81: return "NEWOBJ";
    case 0x82: return "EXT1";
    case 0x83: return "EXT2";
    case 0x84: return "EXT4";
    case 0x85: return "TUPLE1";
    case 0x86: return "TUPLE2";
    case 0x87: return "TUPLE3";
    case 0x88: return "NEWTRUE";
    case 0x89: return "NEWFALSE";
    case 0x8a: return "LONG1";
    case 0x8b: return "LONG4";
    case 'B': return "BINBYTES";
    case 'C': return "SHORT_BINBYTES";
    case 0x8c: return "SHORT_BINUNICODE";
    case 0x8d: return "BINUNICODE8";
    case 0x8e: return "BINBYTES8";
    case 0x8f: return "EMPTY_SET";
    case 0x90: return "ADDITEMS";
    case 0x91: return "FROZENSET";
    case 0x92: return "NEWOBJ_EX";
    case 0x93: return "STACK_GLOBAL";
    case 0x94: return "MEMOIZE";
    case 0x95: return "FRAME";
    case 0x96: return "BYTEARRAY8";
    case 0x97: return "NEXT_BUFFER";
    case 0x98: return "READONLY_BUFFER";
    default: return nullptr;
  }
}

bool is_allowed_global(std::string_view qualified) {
  static const std::string_view callables[] = {
      "collections.OrderedDict",
      "torch._utils._rebuild_tensor_v2",
      "torch._utils._rebuild_tensor",
      "torch._utils._rebuild_parameter",
  };
  for (auto name : callables)
    if (qualified == name) return true;
  constexpr std::string_view torch_prefix = "torch.";
  if (qualified.starts_with(torch_prefix))
    return storage_element_bytes(qualified.substr(torch_prefix.size())) != 0;
  return false;
}

}  // namespace

class Parser {
 public:
  Parser(std::span<const std::uint8_t> bytes, std::string_view what, const Limits& limits)
      : bytes_(bytes), what_(what), limits_(limits) {}

  Document run() {
    while (true) {
      op_offset_ = position_;
      std::uint8_t op = read_u8();
      if (step(op)) break;
    }
    document_.end_offset_ = position_;
    return std::move(document_);
  }

 private:
  template <typename... Parts>
  [[noreturn]] void error(Parts&&... parts) {
    std::ostringstream message;
    message << what_ << ": ";
    (message << ... << std::forward<Parts>(parts));
    message << " (pickle byte " << op_offset_ << ")";
    throw Error(message.str());
  }

  // --- reading, every access bounds-checked
  void need(std::uint64_t count) {
    if (count > bytes_.size() - position_)
      error("truncated pickle: needs ", count, " more bytes, only ", bytes_.size() - position_,
            " left");
  }
  std::uint8_t read_u8() {
    need(1);
    return bytes_[position_++];
  }
  std::uint64_t read_le(int count) {
    need(std::uint64_t(count));
    std::uint64_t value = 0;
    for (int i = 0; i < count; ++i) value |= std::uint64_t(bytes_[position_ + i]) << (8 * i);
    position_ += std::size_t(count);
    return value;
  }
  std::string read_text(std::uint64_t length) {
    need(length);  // refuses a huge declared length before allocating
    std::string text(reinterpret_cast<const char*>(bytes_.data() + position_), std::size_t(length));
    position_ += std::size_t(length);
    return text;
  }
  std::string read_line() {
    std::size_t end = position_;
    while (end < bytes_.size() && bytes_[end] != '\n') ++end;
    if (end == bytes_.size()) error("truncated pickle: GLOBAL name has no end of line");
    std::string line(reinterpret_cast<const char*>(bytes_.data() + position_), end - position_);
    position_ = end + 1;
    return line;
  }

  // --- values and the stack
  Value* make(Value::Kind kind) {
    if (document_.arena_.size() >= limits_.max_values)
      error("pickle creates more than ", limits_.max_values, " objects; not a weight file");
    Value& value = document_.arena_.emplace_back();
    value.kind = kind;
    return &value;
  }
  // The stack as Python's unpickler sees it: MARK starts a new frame, and no
  // opcode may reach below the innermost mark.
  std::size_t frame_base() const { return marks_.empty() ? 0 : marks_.back(); }
  void push(Value* value) {
    if (stack_.size() >= limits_.max_stack_depth) error("pickle stack deeper than ", limits_.max_stack_depth);
    stack_.push_back(value);
  }
  Value* pop() {
    if (stack_.size() <= frame_base()) error("pickle pops from an empty stack");
    Value* value = stack_.back();
    stack_.pop_back();
    return value;
  }
  Value* top() {
    if (stack_.size() <= frame_base()) error("pickle reads from an empty stack");
    return stack_.back();
  }
  std::vector<Value*> pop_to_mark() {
    if (marks_.empty()) error("pickle uses a MARK it never set");
    std::size_t base = marks_.back();
    marks_.pop_back();
    std::vector<Value*> items(stack_.begin() + std::ptrdiff_t(base), stack_.end());
    stack_.resize(base);
    return items;
  }
  void memo_put(std::uint64_t index) { memo_[index] = top(); }
  void memo_get(std::uint64_t index) {
    auto it = memo_.find(index);
    if (it == memo_.end()) error("pickle reads memo entry ", index, " that was never stored");
    push(it->second);
  }

  Value* make_string(Value::Kind kind, std::uint64_t length) {
    Value* value = make(kind);
    value->text = read_text(length);
    return value;
  }
  Value* make_integer(std::int64_t number) {
    Value* value = make(Value::Kind::integer);
    value->integer = number;
    return value;
  }
  Value* make_tuple(std::vector<Value*> items) {
    Value* value = make(Value::Kind::tuple);
    value->items.assign(items.begin(), items.end());
    return value;
  }

  Value* make_global(std::string module, std::string name) {
    std::string qualified = module + "." + name;
    if (!is_allowed_global(qualified))
      error("refusing pickle global '", qualified, "': weight files may only hold tensors");
    Value* value = make(Value::Kind::global);
    value->text = std::move(qualified);
    return value;
  }

  // --- the whitelisted callables
  static bool is_int(const Value* v) { return v->kind == Value::Kind::integer; }
  std::vector<std::int64_t> int_tuple(const Value* v, const char* what) {
    if (v->kind != Value::Kind::tuple) error(what, " is a ", kind_name(v->kind), ", expected a tuple");
    std::vector<std::int64_t> out;
    for (const Value* item : v->items) {
      if (!is_int(item)) error(what, " holds a ", kind_name(item->kind), ", expected ints");
      out.push_back(item->integer);
    }
    return out;
  }

  Value* rebuild_tensor(const std::vector<const Value*>& args, const char* callable) {
    if (args[0]->kind != Value::Kind::storage)
      error(callable, " expects a storage first, got a ", kind_name(args[0]->kind));
    if (!is_int(args[1])) error(callable, " expects an int storage offset");
    Value* tensor = make(Value::Kind::tensor);
    tensor->tensor.storage = args[0]->storage;
    tensor->tensor.storage_offset = args[1]->integer;
    tensor->tensor.size = int_tuple(args[2], "tensor size");
    tensor->tensor.stride = int_tuple(args[3], "tensor stride");
    if (tensor->tensor.size.size() != tensor->tensor.stride.size())
      error(callable, ": size has ", tensor->tensor.size.size(), " dimensions, stride has ",
            tensor->tensor.stride.size());
    return tensor;
  }

  Value* apply(const Value* callable, const Value* args_value) {
    if (callable->kind != Value::Kind::global)
      error("REDUCE applies a ", kind_name(callable->kind), ", not a known function");
    if (args_value->kind != Value::Kind::tuple)
      error("REDUCE arguments are a ", kind_name(args_value->kind), ", not a tuple");
    const auto& args = args_value->items;
    const std::string& name = callable->text;
    if (name == "collections.OrderedDict") {
      if (!args.empty()) error("collections.OrderedDict called with arguments; only OrderedDict() is supported");
      return make(Value::Kind::dict);
    }
    if (name == "torch._utils._rebuild_tensor_v2") {
      // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
      if (args.size() != 6 && args.size() != 7)
        error("torch._utils._rebuild_tensor_v2 called with ", args.size(), " arguments, expected 6 or 7");
      return rebuild_tensor(args, "torch._utils._rebuild_tensor_v2");
    }
    if (name == "torch._utils._rebuild_tensor") {
      if (args.size() != 4)
        error("torch._utils._rebuild_tensor called with ", args.size(), " arguments, expected 4");
      return rebuild_tensor(args, "torch._utils._rebuild_tensor");
    }
    if (name == "torch._utils._rebuild_parameter") {
      // (data, requires_grad, backward_hooks): the parameter is its data.
      if (args.size() != 3 || args[0]->kind != Value::Kind::tensor)
        error("torch._utils._rebuild_parameter expects (tensor, requires_grad, hooks)");
      return const_cast<Value*>(args[0]);
    }
    error("pickle calls '", name, "', which a weight file never does");
  }

  Value* persistent_load(const Value* pid) {
    // ('storage', torch.<Type>Storage, key, location, numel[, view_metadata])
    if (pid->kind != Value::Kind::tuple || (pid->items.size() != 5 && pid->items.size() != 6) ||
        pid->items[0]->kind != Value::Kind::string || pid->items[0]->text != "storage")
      error("unsupported persistent id (expected a ('storage', ...) tuple)");
    const auto& f = pid->items;
    if (f[1]->kind != Value::Kind::global || !f[1]->text.starts_with("torch.") ||
        storage_element_bytes(std::string_view(f[1]->text).substr(6)) == 0)
      error("persistent id names a ", kind_name(f[1]->kind), " where a torch storage type belongs");
    if (f[2]->kind != Value::Kind::string || f[3]->kind != Value::Kind::string || !is_int(f[4]))
      error("persistent id fields are not (str key, str location, int numel)");
    Value* value = make(Value::Kind::storage);
    StorageRef& storage = value->storage;
    storage.type_name = f[1]->text.substr(6);
    storage.key = f[2]->text;
    storage.location = f[3]->text;
    storage.numel = f[4]->integer;
    if (storage.numel < 0) error("storage '", storage.key, "' declares ", storage.numel, " elements");
    if (f.size() == 6 && f[5]->kind != Value::Kind::none) {
      // Legacy view: (view_key, offset, view_size) into the root storage.
      const Value* view = f[5];
      if (view->kind != Value::Kind::tuple || view->items.size() != 3 || !is_int(view->items[1]) ||
          !is_int(view->items[2]))
        error("storage view metadata is not (key, offset, size)");
      storage.is_view = true;
      storage.view_offset = view->items[1]->integer;
      storage.view_numel = view->items[2]->integer;
      if (storage.view_offset < 0 || storage.view_numel < 0 || storage.view_offset > storage.numel ||
          storage.view_numel > storage.numel - storage.view_offset)
        error("storage view [", storage.view_offset, ", +", storage.view_numel, ") lies outside storage '",
              storage.key, "' of ", storage.numel, " elements");
    }
    document_.storages_.push_back(value);
    return value;
  }

  // Runs one opcode; returns true at STOP.
  bool step(std::uint8_t op) {
    using K = Value::Kind;
    switch (op) {
      case 0x80: {  // PROTO
        std::uint8_t version = read_u8();
        if (version > 5) error("pickle protocol ", int(version), " is newer than 5");
        return false;
      }
      case 0x95: {  // FRAME: a length hint only
        std::uint64_t length = read_le(8);
        if (length > bytes_.size() - position_) error("pickle frame of ", length, " bytes runs past the end");
        return false;
      }
      case '.':  // STOP
        document_.root_ = pop();
        return true;
      case '(': marks_.push_back(stack_.size()); return false;
      case '}': push(make(K::dict)); return false;
      case ']': push(make(K::list)); return false;
      case ')': push(make(K::tuple)); return false;
      case 'X': push(make_string(K::string, read_le(4))); return false;
      case 0x8c: push(make_string(K::string, read_u8())); return false;
      case 0x8d: push(make_string(K::string, read_le(8))); return false;
      case 'T': {  // BINSTRING (Python 2 str), signed length
        auto length = std::int32_t(std::uint32_t(read_le(4)));
        if (length < 0) error("negative BINSTRING length");
        push(make_string(K::string, std::uint64_t(length)));
        return false;
      }
      case 'U': push(make_string(K::string, read_u8())); return false;
      case 'B': push(make_string(K::bytes, read_le(4))); return false;
      case 'C': push(make_string(K::bytes, read_u8())); return false;
      case 'q': memo_put(read_u8()); return false;
      case 'r': memo_put(read_le(4)); return false;
      case 0x94: memo_put(memo_.size()); return false;
      case 'h': memo_get(read_u8()); return false;
      case 'j': memo_get(read_le(4)); return false;
      case 'J': push(make_integer(std::int32_t(std::uint32_t(read_le(4))))); return false;
      case 'K': push(make_integer(read_u8())); return false;
      case 'M': push(make_integer(std::int64_t(read_le(2)))); return false;
      case 0x8a: {  // LONG1: little-endian two's complement of n bytes
        std::uint8_t length = read_u8();
        if (length <= 8) {
          std::uint64_t raw = length ? read_le(length) : 0;
          if (length > 0 && length < 8 && (raw >> (8 * length - 1)) & 1)
            raw |= ~std::uint64_t(0) << (8 * length);  // sign-extend
          push(make_integer(std::int64_t(raw)));
        } else {
          push(make_string(K::big_integer, length));
        }
        return false;
      }
      case 'G': {  // BINFLOAT: big-endian IEEE double
        need(8);
        std::uint64_t raw = 0;
        for (int i = 0; i < 8; ++i) raw = (raw << 8) | bytes_[position_ + std::size_t(i)];
        position_ += 8;
        Value* value = make(K::floating);
        value->floating = std::bit_cast<double>(raw);
        push(value);
        return false;
      }
      case 0x88:
      case 0x89: {
        Value* value = make(K::boolean);
        value->boolean = op == 0x88;
        push(value);
        return false;
      }
      case 'N': push(make(K::none)); return false;
      case 't': push(make_tuple(pop_to_mark())); return false;
      case 0x85:
      case 0x86:
      case 0x87: {
        std::size_t count = std::size_t(op - 0x84);
        std::vector<Value*> items(count);
        for (std::size_t i = count; i-- > 0;) items[i] = pop();
        push(make_tuple(std::move(items)));
        return false;
      }
      case 's': {
        Value* value = pop();
        Value* key = pop();
        Value* dict = top();
        if (dict->kind != K::dict) error("SETITEM on a ", kind_name(dict->kind));
        dict->entries.emplace_back(key, value);
        return false;
      }
      case 'u': {
        auto items = pop_to_mark();
        Value* dict = top();
        if (dict->kind != K::dict) error("SETITEMS on a ", kind_name(dict->kind));
        if (items.size() % 2) error("SETITEMS with an odd number of items");
        for (std::size_t i = 0; i < items.size(); i += 2) dict->entries.emplace_back(items[i], items[i + 1]);
        return false;
      }
      case 'a': {
        Value* value = pop();
        Value* list = top();
        if (list->kind != K::list) error("APPEND on a ", kind_name(list->kind));
        list->items.push_back(value);
        return false;
      }
      case 'e': {
        auto items = pop_to_mark();
        Value* list = top();
        if (list->kind != K::list) error("APPENDS on a ", kind_name(list->kind));
        list->items.insert(list->items.end(), items.begin(), items.end());
        return false;
      }
      case 'c': {
        std::string module = read_line();
        std::string name = read_line();
        push(make_global(std::move(module), std::move(name)));
        return false;
      }
      case 0x93: {  // STACK_GLOBAL
        Value* name = pop();
        Value* module = pop();
        if (!module->is_string() || !name->is_string()) error("STACK_GLOBAL needs two strings");
        push(make_global(module->text, name->text));
        return false;
      }
      case 'R': {
        Value* args = pop();
        Value* callable = pop();
        push(apply(callable, args));
        return false;
      }
      case 'b': {  // BUILD: only OrderedDict's _metadata attribute, which is dropped
        Value* state = pop();
        Value* object = top();
        if (object->kind == K::dict && (state->kind == K::dict || state->kind == K::none)) return false;
        if (object->kind == K::tensor && (state->kind == K::dict || state->kind == K::none ||
                                          state->kind == K::tuple))
          return false;
        error("BUILD sets the state of a ", kind_name(object->kind), "; only OrderedDict metadata is supported");
      }
      case 'Q': push(persistent_load(pop())); return false;
      case '0': pop(); return false;
      case '1': pop_to_mark(); return false;
      case '2': push(top()); return false;
      default: {
        const char* name = opcode_name(op);
        std::ostringstream hex;
        hex << "0x" << std::hex << int(op);
        if (name)
          error("refusing pickle opcode ", name, " (", hex.str(), "): weight files may only hold tensors");
        error("unknown pickle opcode ", hex.str(), "; the file is corrupt or not a pickle");
      }
    }
  }

  std::span<const std::uint8_t> bytes_;
  std::string what_;
  Limits limits_;
  std::size_t position_ = 0;
  std::size_t op_offset_ = 0;
  Document document_;
  std::vector<Value*> stack_;
  std::vector<std::size_t> marks_;
  std::unordered_map<std::uint64_t, Value*> memo_;
};

Document parse(std::span<const std::uint8_t> bytes, std::string_view what, const Limits& limits) {
  return Parser(bytes, what, limits).run();
}

}  // namespace tessera::io::pickle
