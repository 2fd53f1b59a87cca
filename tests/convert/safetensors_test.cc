// runtime/safetensors: a written file read back (values, metadata, alignment, an empty tensor),
// the JSON parser's corner cases, the index file, and every way a damaged or crafted file is
// refused: each case asserts its one-line message names the file and, where there is one, the
// tensor.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "runtime/check.h"
#include "runtime/files.h"
#include "runtime/safetensors/json.h"
#include "runtime/safetensors/safetensors.h"
#include "tests/util/expect_error.h"

namespace mowe::safetensors {
namespace {

namespace fs = std::filesystem;
using mowe::testing::expect_error;

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           fmt::format("safetensors_test_{}_{}", ::getpid(),
                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // A file of an explicit header (length prefix computed unless given) and data section.
  std::string raw(const std::string& name, const std::string& json, const std::string& data,
                  int64_t length = -1) const {
    const uint64_t n = length < 0 ? json.size() : static_cast<uint64_t>(length);
    std::string bytes(8, '\0');
    for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((n >> (8 * i)) & 0xff);
    bytes += json + data;
    write(name, bytes);
    return path(name);
  }

  void write(const std::string& name, const std::string& bytes) const {
    std::ofstream out(path(name), std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }

  fs::path dir_;
};

// Two F32 tensors a [2] and b [1], contiguous: the baseline the damaged cases edit.
const std::string kGoodJson =
    R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})";
const std::string kGoodData(12, '\x01');

TEST_F(SafetensorsTest, WrittenFileReadsBack) {
  const std::vector<float> a = {1.5f, -2.0f, 3.25f, 0.0f, 1e-30f, 7.0f};
  const std::vector<int64_t> b = {-1, 1ll << 40};
  std::map<std::string, std::string> meta = {{"format", "pt"}, {"note", "quote \" and\nnewline"}};
  {
    Writer w(path("x.safetensors"),
             {{"a", DType::F32, {2, 3}}, {"empty", DType::I32, {0, 4}}, {"b", DType::I64, {2}}},
             meta);
    w.append(a.data(), 8);  // in pieces: the writer streams
    w.append(reinterpret_cast<const char*>(a.data()) + 8, a.size() * 4 - 8);
    w.append(b.data(), b.size() * 8);
    w.finish();
  }
  EXPECT_FALSE(fs::exists(path("x.safetensors.tmp")));
  const Reader r(path("x.safetensors"));
  EXPECT_EQ(r.header().metadata, meta);
  EXPECT_EQ(r.header().data_start % 8, 0u) << "the header is padded to 8 bytes";
  ASSERT_EQ(r.header().tensors.size(), 3u);
  const TensorInfo* ta = r.find("a");
  ASSERT_NE(ta, nullptr);
  EXPECT_EQ(ta->shape, (std::vector<int64_t>{2, 3}));
  std::vector<float> a2(6);
  r.read(*ta, 0, a2.data(), 24);
  EXPECT_EQ(a2, a);
  float one;
  r.read(*ta, 8, &one, 4);
  EXPECT_EQ(one, 3.25f);
  std::vector<int64_t> b2(2);
  r.read(*r.find("b"), 0, b2.data(), 16);
  EXPECT_EQ(b2, b);
  EXPECT_EQ(r.find("empty")->bytes(), 0u);
  expect_error([&] { r.read(*ta, 20, a2.data(), 8); },
               {"x.safetensors", "\"a\"", "bytes 20..28 asked for, it has 24"});
}

TEST_F(SafetensorsTest, WriterRefusesWrongByteCounts) {
  expect_error(
      [&] {
        Writer w(path("short.safetensors"), {{"a", DType::F32, {2}}}, {});
        w.append("abcd", 4);
        w.finish();
      },
      {"short.safetensors", "4 of the 8 data bytes were written"});
  EXPECT_FALSE(fs::exists(path("short.safetensors")));
  EXPECT_FALSE(fs::exists(path("short.safetensors.tmp")));
  expect_error(
      [&] {
        Writer w(path("long.safetensors"), {{"a", DType::F32, {1}}}, {});
        w.append("abcdefgh", 8);
      },
      {"long.safetensors", "4 more bytes than the header announces"});
  expect_error(
      [&] {
        Writer w(path("dup.safetensors"), {{"a", DType::F32, {1}}, {"a", DType::F32, {1}}}, {});
      },
      {"dup.safetensors", "tensor \"a\" appears twice"});
}

TEST_F(SafetensorsTest, BaselineIsValid) {
  const Reader r(raw("good.safetensors", kGoodJson, kGoodData));
  EXPECT_EQ(r.header().tensors.size(), 2u);
}

TEST_F(SafetensorsTest, TruncatedFiles) {
  write("tiny.safetensors", "abc");
  expect_error([&] { Reader r(path("tiny.safetensors")); },
               {"tiny.safetensors", "3 bytes: too short for a safetensors file"});
  // The data section cut short: the last tensor points past the end.
  const std::string p = raw("cut.safetensors", kGoodJson, kGoodData.substr(0, 10));
  expect_error([&] { Reader r(p); },
               {"cut.safetensors", "tensor \"b\"", "data_offsets [8, 12] point past the end",
                "data section has 10 bytes", "truncated"});
  // Cut inside the header.
  raw("good.safetensors", kGoodJson, kGoodData);
  const std::string bytes = read_file(path("good.safetensors"), "test");
  write("in_header.safetensors", bytes.substr(0, 30));
  expect_error([&] { Reader r(path("in_header.safetensors")); },
               {"in_header.safetensors", "header length", "is larger than the rest of the file"});
}

TEST_F(SafetensorsTest, BadHeaderLengths) {
  expect_error([&] { Reader r(raw("huge.safetensors", kGoodJson, kGoodData, int64_t{1} << 62)); },
               {"huge.safetensors", "header length 4611686018427387904 is beyond the", "limit"});
  expect_error([&] { Reader r(raw("long.safetensors", kGoodJson, kGoodData, 5000)); },
               {"long.safetensors", "header length 5000 is larger than the rest of the file (",
                "truncated or not a safetensors file"});
  expect_error([&] { Reader r(raw("zero.safetensors", kGoodJson, kGoodData, 0)); },
               {"zero.safetensors", "header length 0"});
  // A length that is too short cuts the JSON.
  expect_error([&] { Reader r(raw("cutjson.safetensors", kGoodJson, kGoodData, 20)); },
               {"cutjson.safetensors", "malformed JSON"});
}

TEST_F(SafetensorsTest, MalformedJson) {
  const std::string bad = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},})";
  expect_error([&] { Reader r(raw("m1.safetensors", bad, std::string(8, 'x'))); },
               {"m1.safetensors", "header: malformed JSON at byte", "object key"});
  expect_error([&] { Reader r(raw("m2.safetensors", "[1,2]", "")); },
               {"m2.safetensors", "does not begin with '{'"});
  expect_error([&] { Reader r(raw("m3.safetensors", R"({"a":{"dtype":"F32")", "")); },
               {"m3.safetensors", "malformed JSON", "unexpected end"});
  expect_error(
      [&] {
        Reader r(raw(
            "dup.safetensors",
            R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
            std::string(8, 'x')));
      },
      {"dup.safetensors", "key \"a\" appears twice"});
  // Nesting is bounded: no stack overflow on a crafted header.
  const std::string deep = "{\"a\":" + std::string(100000, '[') + std::string(100000, ']') + "}";
  expect_error([&] { Reader r(raw("deep.safetensors", deep, "")); },
               {"deep.safetensors", "nested deeper than"});
  expect_error([&] { Reader r(raw("ctl.safetensors", "{\"a\x01\":1}", "")); },
               {"ctl.safetensors", "control character 0x01"});
}

TEST_F(SafetensorsTest, OffsetsPastTheEnd) {
  const std::string json =
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1000],"data_offsets":[8,4008]}})";
  expect_error([&] { Reader r(raw("past.safetensors", json, kGoodData)); },
               {"past.safetensors", "tensor \"b\"", "point past the end of the file"});
}

TEST_F(SafetensorsTest, OverlappingAndNonContiguousOffsets) {
  const std::string overlap =
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  expect_error(
      [&] { Reader r(raw("overlap.safetensors", overlap, kGoodData)); },
      {"overlap.safetensors", "tensors \"a\" (bytes 0..8) and \"b\" (bytes 4..12) overlap"});
  const std::string gap =
      R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})";
  expect_error([&] { Reader r(raw("gap.safetensors", gap, kGoodData)); },
               {"gap.safetensors", "bytes 4..8 of the data section belong to no tensor",
                "between \"a\" and \"b\"", "contiguous"});
  const std::string late = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})";
  expect_error([&] { Reader r(raw("late.safetensors", late, std::string(8, 'x'))); },
               {"late.safetensors", "bytes 0..4", "before \"a\""});
  expect_error([&] { Reader r(raw("trail.safetensors", kGoodJson, kGoodData + "xyz")); },
               {"trail.safetensors", "3 trailing bytes belong to no tensor"});
  const std::string backwards = R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})";
  expect_error([&] { Reader r(raw("back.safetensors", backwards, "")); },
               {"back.safetensors", "tensor \"a\"", "end before they begin"});
}

TEST_F(SafetensorsTest, UnknownDtype) {
  const std::string json = R"({"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})";
  expect_error([&] { Reader r(raw("dtype.safetensors", json, std::string(8, 'x'))); },
               {"dtype.safetensors", "tensor \"a\"", "unknown dtype \"F33\"", "F32"});
  const std::string not_string = R"({"a":{"dtype":4,"shape":[2],"data_offsets":[0,8]}})";
  expect_error([&] { Reader r(raw("dtype2.safetensors", not_string, std::string(8, 'x'))); },
               {"dtype2.safetensors", "tensor \"a\"", "dtype is 4, not a string"});
}

TEST_F(SafetensorsTest, ShapeAndSizeMismatch) {
  const std::string json = R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})";
  expect_error([&] { Reader r(raw("size.safetensors", json, std::string(8, 'x'))); },
               {"size.safetensors", "tensor \"a\"", "shape [3] of F32 is 12 bytes",
                "data_offsets [0, 8] hold 8"});
  const std::string overflow =
      R"({"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}})";
  expect_error([&] { Reader r(raw("ovf.safetensors", overflow, std::string(8, 'x'))); },
               {"ovf.safetensors", "tensor \"a\"", "overflows 64 bits"});
  const std::string missing = R"({"a":{"dtype":"F32","data_offsets":[0,8]}})";
  expect_error([&] { Reader r(raw("noshape.safetensors", missing, std::string(8, 'x'))); },
               {"noshape.safetensors", "tensor \"a\": no shape"});
  const std::string extra =
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"strides":[1]}})";
  expect_error([&] { Reader r(raw("extra.safetensors", extra, std::string(8, 'x'))); },
               {"extra.safetensors", "tensor \"a\"", "unknown field \"strides\""});
}

TEST_F(SafetensorsTest, NonIntegerLengths) {
  for (const auto& [value, text] : std::vector<std::pair<std::string, std::string>>{
           {"NaN", "shape[0] is NaN"},
           {"-Infinity", "shape[0] is -Infinity"},
           {"-2", "shape[0] is -2"},
           {"2.0", "shape[0] is 2.0"},
           {"2e0", "shape[0] is 2e0"},
           {"\"2\"", "shape[0] is \"2\""},
           {"99999999999999999999", "shape[0] is 99999999999999999999"}}) {
    const std::string json =
        R"({"a":{"dtype":"F32","shape":[)" + value + R"(],"data_offsets":[0,8]}})";
    expect_error([&] { Reader r(raw("nan.safetensors", json, std::string(8, 'x'))); },
                 {"nan.safetensors", "tensor \"a\"", text, "not a dimension"});
  }
  const std::string json = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,NaN]}})";
  expect_error([&] { Reader r(raw("nan2.safetensors", json, std::string(8, 'x'))); },
               {"nan2.safetensors", "tensor \"a\"", "data_offsets[1] is NaN, not a byte offset"});
  const std::string three = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}})";
  expect_error([&] { Reader r(raw("three.safetensors", three, std::string(8, 'x'))); },
               {"three.safetensors", "tensor \"a\"", "data_offsets is an array of 3"});
}

TEST_F(SafetensorsTest, Metadata) {
  const std::string json =
      R"({"__metadata__":{"k":5},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  expect_error([&] { Reader r(raw("meta.safetensors", json, std::string(4, 'x'))); },
               {"meta.safetensors", "__metadata__ entry \"k\" is 5, not a string"});
  const std::string tensor_named_weird =
      R"({"a\nb":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"c":{"dtype":"F32","shape":[5],"data_offsets":[4,8]}})";
  expect_error([&] { Reader r(raw("weird.safetensors", tensor_named_weird, std::string(8, 'x'))); },
               {"weird.safetensors", "tensor \"c\"", "20 bytes"});
}

TEST_F(SafetensorsTest, NotARegularFile) {
  expect_error([&] { Reader r(dir_.string()); }, {dir_.string(), "not a regular file"});
  expect_error([&] { Reader r(path("absent.safetensors")); },
               {"absent.safetensors", "no such file"});
}

TEST(SafetensorsJson, StringsAndNumbers) {
  const Json v = parse_json(R"({"s":"a\"b\\c\u00e9\ud83d\ude00\n","n":[0,12,-3.5e2],"t":true})");
  ASSERT_TRUE(v.is(Json::Kind::Object));
  EXPECT_EQ(v.find("s")->text, "a\"b\\c\xc3\xa9\xf0\x9f\x98\x80\n");
  EXPECT_EQ(v.find("n")->items[2].text, "-3.5e2");
  int64_t i;
  EXPECT_TRUE(json_to_index(v.find("n")->items[1], &i));
  EXPECT_EQ(i, 12);
  EXPECT_FALSE(json_to_index(v.find("n")->items[2], &i));
  EXPECT_EQ(parse_json(json_quote("x\"\n\x02y")).text, "x\"\n\x02y");
  expect_error([] { parse_json("\"\\ud800\""); }, {"high surrogate"});
  expect_error([] { parse_json("01"); }, {"unexpected text after the value"});
  expect_error([] { parse_json("{\"a\":1} x"); }, {"malformed JSON at byte 8"});
}

TEST_F(SafetensorsTest, IndexFile) {
  Index index;
  index.total_size = 12;
  index.weight_map = {{"a", "model-00001-of-00002.safetensors"},
                      {"b", "model-00002-of-00002.safetensors"}};
  const Index back = parse_index(index_json(index), "idx.json");
  EXPECT_EQ(back.total_size, 12u);
  EXPECT_EQ(back.weight_map, index.weight_map);
  expect_error([] { parse_index(R"({"weight_map":{"a":"../etc/passwd"}})", "idx.json"); },
               {"idx.json", "weight_map entry \"a\"", "not a plain file name"});
  expect_error([] { parse_index(R"({"metadata":{"total_size":-1},"weight_map":{}})", "idx.json"); },
               {"idx.json", "metadata.total_size is -1"});
  expect_error([] { parse_index(R"({"metadata":{}})", "idx.json"); },
               {"idx.json", "no weight_map"});
  expect_error([] { parse_index(R"({"weight_map":)", "idx.json"); },
               {"idx.json", "malformed JSON"});
  EXPECT_EQ(shard_file_name(2, 13), "model-00002-of-00013.safetensors");
}

}  // namespace
}  // namespace mowe::safetensors
