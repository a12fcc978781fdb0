// The restricted pickle reader: what torch.save writes parses; anything that
// would make Python run code, and every kind of damage, is a tessera::Error.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "io/weights/pickle.hpp"
#include "tessera/error.hpp"

namespace {

using tessera::io::pickle::Document;
using tessera::io::pickle::parse;
using tessera::io::pickle::Value;

// Hand-assembled pickle bytes, opcode by opcode.
struct PickleBytes {
  std::vector<std::uint8_t> bytes;

  PickleBytes& op(std::uint8_t code) {
    bytes.push_back(code);
    return *this;
  }
  PickleBytes& raw(const std::string& text) {
    bytes.insert(bytes.end(), text.begin(), text.end());
    return *this;
  }
  PickleBytes& u32(std::uint32_t value) {
    for (int i = 0; i < 4; ++i) bytes.push_back(std::uint8_t(value >> (8 * i)));
    return *this;
  }
  PickleBytes& proto() { return op(0x80).op(2); }
  PickleBytes& str(const std::string& text) { return op('X').u32(std::uint32_t(text.size())).raw(text); }
  PickleBytes& global(const std::string& module, const std::string& name) {
    return op('c').raw(module + "\n" + name + "\n");
  }
  PickleBytes& int1(std::uint8_t value) { return op('K').op(value); }
  PickleBytes& mark() { return op('('); }
  PickleBytes& tuple() { return op('t'); }
  PickleBytes& stop() { return op('.'); }
  PickleBytes& empty_ordered_dict() { return global("collections", "OrderedDict").op(')').op('R'); }
  // _rebuild_tensor_v2(('storage', FloatStorage, key, 'cpu', numel), 0, size, stride, False, OrderedDict())
  PickleBytes& tensor_2x3(const std::string& key, const std::string& storage_type = "FloatStorage") {
    global("torch._utils", "_rebuild_tensor_v2").mark();
    mark().str("storage").global("torch", storage_type).str(key).str("cpu").int1(6).tuple().op('Q');
    int1(0).int1(2).int1(3).op(0x86).int1(3).int1(1).op(0x86).op(0x89).empty_ordered_dict();
    return tuple().op('R');
  }
};

// The shape torch.save gives a one-entry state_dict.
PickleBytes state_dict_pickle() {
  PickleBytes p;
  p.proto().empty_ordered_dict().op('q').op(0).mark().str("layer.weight").tensor_2x3("0").op('u').stop();
  return p;
}

Document parse_bytes(const PickleBytes& p) { return parse(p.bytes, "test pickle"); }

std::string error_of(const PickleBytes& p) {
  try {
    parse_bytes(p);
  } catch (const tessera::Error& error) {
    return error.what();
  }
  return "(no error)";
}

TEST(Pickle, ReadsATorchStyleStateDict) {
  Document document = parse_bytes(state_dict_pickle());
  const Value& root = document.root();
  ASSERT_EQ(root.kind, Value::Kind::dict);
  ASSERT_EQ(root.entries.size(), 1u);
  const Value* tensor = root.find("layer.weight");
  ASSERT_NE(tensor, nullptr);
  ASSERT_EQ(tensor->kind, Value::Kind::tensor);
  EXPECT_EQ(tensor->tensor.storage.type_name, "FloatStorage");
  EXPECT_EQ(tensor->tensor.storage.key, "0");
  EXPECT_EQ(tensor->tensor.storage.location, "cpu");
  EXPECT_EQ(tensor->tensor.storage.numel, 6);
  EXPECT_EQ(tensor->tensor.storage_offset, 0);
  EXPECT_EQ(tensor->tensor.size, (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(tensor->tensor.stride, (std::vector<std::int64_t>{3, 1}));
  EXPECT_EQ(document.storages().size(), 1u);
  EXPECT_EQ(document.end_offset(), state_dict_pickle().bytes.size());
}

TEST(Pickle, StopsAtStopAndReportsTheOffset) {
  PickleBytes p;
  p.proto().op('M').op(0xe9).op(0x03).stop().raw("trailing bytes of the next pickle");
  Document document = parse_bytes(p);
  EXPECT_EQ(document.root().kind, Value::Kind::integer);
  EXPECT_EQ(document.root().integer, 1001);
  EXPECT_EQ(document.end_offset(), 6u);
}

TEST(Pickle, ReadsScalarsAndContainers) {
  PickleBytes p;
  p.proto().op(']').mark();
  p.op('J').u32(0xfffffffe);                               // BININT -2
  p.op(0x8a).op(2).op(0x00).op(0x80);                      // LONG1 -32768
  p.op(0x8a).op(10).raw(std::string(10, '\x01'));          // LONG1 beyond int64
  p.op('G').raw(std::string("\x40\x09\x21\xfb\x54\x44\x2d\x18", 8));  // BINFLOAT pi
  p.op(0x88).op(0x89).op('N');
  p.op(0x8c).op(2).raw("hi");                              // SHORT_BINUNICODE
  p.op('U').op(1).raw("z");                                // SHORT_BINSTRING
  p.op('e').stop();                                        // APPENDS
  Document document = parse_bytes(p);
  const auto& items = document.root().items;
  ASSERT_EQ(items.size(), 9u);
  EXPECT_EQ(items[0]->integer, -2);
  EXPECT_EQ(items[1]->integer, -32768);
  EXPECT_EQ(items[2]->kind, Value::Kind::big_integer);
  EXPECT_EQ(items[2]->text.size(), 10u);
  EXPECT_DOUBLE_EQ(items[3]->floating, 3.141592653589793);
  EXPECT_TRUE(items[4]->boolean);
  EXPECT_FALSE(items[5]->boolean);
  EXPECT_EQ(items[6]->kind, Value::Kind::none);
  EXPECT_EQ(items[7]->text, "hi");
  EXPECT_EQ(items[8]->text, "z");
}

TEST(Pickle, MemoSharesObjects) {
  PickleBytes p;
  p.proto().op(']').op(0x94).op('h').op(0).op('a').stop();  // l = []; l.append(l)
  Document document = parse_bytes(p);                         // a cycle: fine in the arena
  ASSERT_EQ(document.root().items.size(), 1u);
  EXPECT_EQ(document.root().items[0], &document.root());
}

TEST(Pickle, RefusesCodeExecution) {
  PickleBytes os_system;
  os_system.proto().global("os", "system").str("echo owned").op(0x85).op('R').stop();
  EXPECT_NE(error_of(os_system).find("refusing pickle global 'os.system'"), std::string::npos)
      << error_of(os_system);
  EXPECT_NE(error_of(os_system).find("weight files may only hold tensors"), std::string::npos);

  PickleBytes stack_global;
  stack_global.proto().op(0x8c).op(8).raw("builtins").op(0x8c).op(4).raw("eval").op(0x93).stop();
  EXPECT_NE(error_of(stack_global).find("refusing pickle global 'builtins.eval'"), std::string::npos);

  // A lookalike module path must not slip through.
  PickleBytes lookalike;
  lookalike.proto().global("torch._utils", "_rebuild_tensor_v2.__globals__").stop();
  EXPECT_NE(error_of(lookalike).find("refusing pickle global"), std::string::npos);

  PickleBytes newobj;
  newobj.proto().empty_ordered_dict().op(')').op(0x81).stop();
  EXPECT_NE(error_of(newobj).find("refusing pickle opcode NEWOBJ (0x81)"), std::string::npos) << error_of(newobj);

  PickleBytes inst;
  inst.proto().mark().op('i').raw("os\nsystem\n").stop();
  EXPECT_NE(error_of(inst).find("refusing pickle opcode INST"), std::string::npos);

  // An allowed global that is not callable in a weight file.
  PickleBytes call_storage;
  call_storage.proto().global("torch", "FloatStorage").op(')').op('R').stop();
  EXPECT_NE(error_of(call_storage).find("which a weight file never does"), std::string::npos);
}

TEST(Pickle, KeepsTheDtypeOfOtherStorages) {
  PickleBytes p;
  p.proto().empty_ordered_dict().mark().str("x").tensor_2x3("0", "HalfStorage").op('u').stop();
  Document document = parse_bytes(p);
  EXPECT_EQ(document.root().find("x")->tensor.storage.type_name, "HalfStorage");

  PickleBytes unknown;
  unknown.proto().empty_ordered_dict().mark().str("x").tensor_2x3("0", "QuantizedStorage").op('u').stop();
  EXPECT_NE(error_of(unknown).find("refusing pickle global 'torch.QuantizedStorage'"), std::string::npos);
}

TEST(Pickle, RefusesMalformedStructure) {
  PickleBytes huge_string;
  huge_string.proto().op('X').u32(0xffffffffu).stop();
  EXPECT_NE(error_of(huge_string).find("truncated pickle"), std::string::npos);

  PickleBytes bad_memo;
  bad_memo.proto().op('h').op(7).stop();
  EXPECT_NE(error_of(bad_memo).find("never stored"), std::string::npos);

  PickleBytes empty_pop;
  empty_pop.proto().op('0').stop();
  EXPECT_NE(error_of(empty_pop).find("empty stack"), std::string::npos);

  PickleBytes below_mark;  // SETITEM may not reach the dict below a MARK
  below_mark.proto().op('}').mark().str("k").str("v").op('s').stop();
  EXPECT_NE(error_of(below_mark).find("empty stack"), std::string::npos);

  PickleBytes setitem_on_list;
  setitem_on_list.proto().op(']').str("k").str("v").op('s').stop();
  EXPECT_NE(error_of(setitem_on_list).find("SETITEM on a list"), std::string::npos);

  PickleBytes no_mark;
  no_mark.proto().op('t').stop();
  EXPECT_NE(error_of(no_mark).find("MARK"), std::string::npos);

  PickleBytes bad_pid;
  bad_pid.proto().str("not a storage").op('Q').stop();
  EXPECT_NE(error_of(bad_pid).find("persistent id"), std::string::npos);

  PickleBytes negative_numel;
  negative_numel.proto().mark().str("storage").global("torch", "FloatStorage").str("0").str("cpu");
  negative_numel.op('J').u32(0xffffffffu).tuple().op('Q').stop();
  EXPECT_NE(error_of(negative_numel).find("declares -1 elements"), std::string::npos);

  PickleBytes no_stop;
  no_stop.proto().op('N');
  EXPECT_NE(error_of(no_stop).find("truncated pickle"), std::string::npos);

  PickleBytes garbage;
  garbage.op(0xff);
  EXPECT_NE(error_of(garbage).find("unknown pickle opcode 0xff"), std::string::npos);

  PickleBytes future;
  future.op(0x80).op(9).stop();
  EXPECT_NE(error_of(future).find("protocol 9"), std::string::npos);
}

TEST(Pickle, EveryTruncationIsAnError) {
  auto full = state_dict_pickle().bytes;
  for (std::size_t cut = 0; cut < full.size(); ++cut) {
    std::vector<std::uint8_t> part(full.begin(), full.begin() + std::ptrdiff_t(cut));
    EXPECT_THROW(parse(part, "cut pickle"), tessera::Error) << "cut at " << cut;
  }
}

TEST(Pickle, RandomDamageNeverCrashes) {
  // Flipped bytes must end in a parse or a tessera::Error, never anything else.
  auto full = state_dict_pickle().bytes;
  std::mt19937 random(1234);
  int errors = 0;
  for (int trial = 0; trial < 5000; ++trial) {
    auto damaged = full;
    int flips = 1 + int(random() % 4);
    for (int f = 0; f < flips; ++f) damaged[random() % damaged.size()] = std::uint8_t(random());
    try {
      parse(damaged, "damaged pickle");
    } catch (const tessera::Error&) {
      ++errors;
    }
  }
  EXPECT_GT(errors, 1000);
}

TEST(Pickle, LimitsTheWorkAPickleCanAsk) {
  PickleBytes many;
  many.proto().op(']').mark();
  for (int i = 0; i < 100; ++i) many.op('N');
  many.op('e').stop();
  tessera::io::pickle::Limits limits;
  limits.max_values = 50;
  try {
    parse(many.bytes, "many", limits);
    FAIL() << "expected a limit error";
  } catch (const tessera::Error& error) {
    EXPECT_NE(std::string(error.what()).find("more than 50 objects"), std::string::npos);
  }

  // Deep nesting is built and torn down without recursion.
  PickleBytes deep;
  deep.proto().op('N');
  for (int i = 0; i < 200000; ++i) deep.op(0x85);  // TUPLE1
  deep.stop();
  Document document = parse_bytes(deep);
  EXPECT_EQ(document.root().kind, Value::Kind::tuple);
}

}  // namespace
