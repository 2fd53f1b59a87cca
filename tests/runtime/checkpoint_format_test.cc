// The checkpoint format library: CRC32C vectors, framed files and each way they can be damaged,
// the layout's offsets, a checkpoint written by three simulated processes and read back (whole,
// across chunks, in pieces), damaged and truncated checkpoints, and the directory protocol
// (latest, listing, retention, replacement, directory checks, failed writes).
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "runtime/check.h"
#include "runtime/checkpoint/crc32c.h"
#include "runtime/checkpoint/directory.h"
#include "runtime/checkpoint/framed_file.h"
#include "runtime/checkpoint/layout.h"
#include "runtime/checkpoint/reader.h"
#include "runtime/checkpoint/writer.h"
#include "runtime/files.h"
#include "tests/util/expect_error.h"

namespace mowe::checkpoint {
namespace {

namespace fs = std::filesystem;
using mowe::testing::expect_error;

std::string hex(uint32_t v) {
  return fmt::format("{:#010x}", v);
}

std::string slurp(const fs::path& path) {
  return read_file(path.string(), "test file");
}

void overwrite(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

void flip_byte(const fs::path& path, int64_t offset) {
  std::string bytes = slurp(path);
  ASSERT_LT(offset, static_cast<int64_t>(bytes.size()));
  bytes[offset] = static_cast<char>(bytes[offset] ^ 0x5a);
  overwrite(path, bytes);
}

// A fresh directory per test, removed afterwards.
class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           fmt::format("checkpoint_format_test.{}.{}", ::getpid(),
                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path dir_;
};

// ---- CRC32C -----------------------------------------------------------------------------------

TEST(Crc32c, KnownVectors) {
  const std::string digits = "123456789";
  EXPECT_EQ(crc32c(digits.data(), digits.size()), 0xE3069283u);
  EXPECT_EQ(crc32c_portable(digits.data(), digits.size()), 0xE3069283u);
  // RFC 3720 (iSCSI), appendix B.4.
  std::vector<uint8_t> bytes(32, 0);
  EXPECT_EQ(crc32c(bytes.data(), 32), 0x8A9136AAu);
  EXPECT_EQ(crc32c_portable(bytes.data(), 32), 0x8A9136AAu);
  std::fill(bytes.begin(), bytes.end(), 0xff);
  EXPECT_EQ(crc32c(bytes.data(), 32), 0x62A8AB43u);
  std::iota(bytes.begin(), bytes.end(), 0);
  EXPECT_EQ(crc32c(bytes.data(), 32), 0x46DD794Eu);
  std::reverse(bytes.begin(), bytes.end());
  EXPECT_EQ(crc32c_portable(bytes.data(), 32), 0x113FDB5Cu);
  EXPECT_EQ(crc32c(nullptr, 0), 0u);
}

TEST(Crc32c, HardwareMatchesPortableAndExtends) {
  std::mt19937_64 rng(7);
  std::vector<uint8_t> buffer(5000);
  for (auto& b : buffer) b = static_cast<uint8_t>(rng());
  for (int trial = 0; trial < 300; ++trial) {
    const size_t offset = rng() % 16;
    const size_t n = rng() % (buffer.size() - 16);
    const uint8_t* p = buffer.data() + offset;
    const uint32_t whole = crc32c(p, n);
    ASSERT_EQ(whole, crc32c_portable(p, n)) << "offset " << offset << " length " << n;
    const size_t split = n == 0 ? 0 : rng() % (n + 1);
    EXPECT_EQ(crc32c(p + split, n - split, crc32c(p, split)), whole);
    EXPECT_EQ(crc32c_portable(p + split, n - split, crc32c_portable(p, split)), whole);
  }
}

TEST(Crc32c, Mask) {
  EXPECT_EQ(crc32c_mask(0), 0xa282ead8u);
  EXPECT_EQ(crc32c_mask(0xE3069283u), 0xc78ab0e5u);
  for (uint32_t v : {0u, 1u, 0xE3069283u, 0xffffffffu, 0x12345678u})
    EXPECT_EQ(crc32c_unmask(crc32c_mask(v)), v);
}

// ---- framed files -----------------------------------------------------------------------------

class FramedFile : public CheckpointTest {
 protected:
  std::string path() const { return (dir_ / "state.bin").string(); }
  std::string read() const { return read_framed_file(path(), "MOWETEST", 1); }
  const std::string payload_ = "payload bytes \x01\x02\x00 and more";
};

TEST_F(FramedFile, RoundTripAndLayout) {
  write_framed_file(path(), "MOWETEST", 1, payload_);
  uint32_t version = 0;
  EXPECT_EQ(read_framed_file(path(), "MOWETEST", 4, &version), payload_);
  EXPECT_EQ(version, 1u);
  // The bytes themselves: magic, u32 version, u64 length, u32 CRC, little-endian.
  const std::string bytes = slurp(path());
  ASSERT_EQ(bytes.size(), 24 + payload_.size());
  EXPECT_EQ(bytes.substr(0, 8), "MOWETEST");
  EXPECT_EQ(bytes.substr(8, 4), std::string("\x01\x00\x00\x00", 4));
  EXPECT_EQ(static_cast<uint8_t>(bytes[12]), payload_.size());
  EXPECT_EQ(bytes.substr(13, 7), std::string(7, '\0'));
  uint32_t crc = crc32c(payload_.data(), payload_.size());
  EXPECT_EQ(bytes.substr(20, 4), std::string(reinterpret_cast<const char*>(&crc), 4));
  EXPECT_EQ(bytes.substr(24), payload_);
  // An empty payload too.
  write_framed_file(path(), "MOWETEST", 1, "");
  EXPECT_EQ(read(), "");
}

TEST_F(FramedFile, EachDamageHasItsMessage) {
  expect_error([&] { read(); }, {path() + ": missing file"});

  write_framed_file(path(), "MOWETEST", 1, payload_);
  const std::string good = slurp(path());
  const size_t n = payload_.size();
  for (size_t size : {size_t{0}, size_t{10}, size_t{23}}) {
    overwrite(path(), good.substr(0, size));
    expect_error([&] { read(); },
                 {path() + ": truncated: " + std::to_string(size) + " bytes, the header needs 24"});
  }
  for (size_t kept : {size_t{0}, size_t{1}, n - 1}) {
    overwrite(path(), good.substr(0, 24 + kept));
    expect_error([&] { read(); }, {fmt::format("{}: truncated: the header announces {} payload "
                                               "bytes, the file has {}",
                                               path(), n, kept)});
  }
  overwrite(path(), good + "x");
  expect_error([&] { read(); }, {fmt::format("{}: damaged: the header announces {} payload bytes, "
                                             "the file has {}",
                                             path(), n, n + 1)});

  // A flipped payload byte, and a flipped CRC byte.
  std::string bad = good;
  bad[30] ^= 0x10;
  overwrite(path(), bad);
  const uint32_t stored = crc32c(payload_.data(), n);
  const uint32_t actual = crc32c(bad.data() + 24, n);
  expect_error([&] { read(); }, {fmt::format("{}: damaged: CRC32C of the payload is {}, the header "
                                             "says {}",
                                             path(), hex(actual), hex(stored))});
  bad = good;
  bad[21] ^= 0x01;
  overwrite(path(), bad);
  expect_error([&] { read(); }, {path() + ": damaged: CRC32C of the payload is " + hex(stored)});
  // A flipped magic byte, version byte and length byte.
  bad = good;
  bad[0] ^= 0x01;
  overwrite(path(), bad);
  expect_error([&] { read(); }, {path() + ": not a MOWETEST file"});
  bad = good;
  bad[8] = 7;
  overwrite(path(), bad);
  expect_error([&] { read(); }, {path() + ": format version 7, this build reads up to 1: use a "
                                          "newer mowe"});
  bad = good;
  bad[19] = 0x40;  // a length of 2^62 + n: never allocated
  overwrite(path(), bad);
  expect_error([&] { read(); }, {path() + ": truncated: the header announces 4611686018427387"});
}

TEST_F(FramedFile, ForeignAndFutureFiles) {
  write_framed_file(path(), "OTHERMAG", 1, payload_);
  expect_error([&] { read(); }, {path() + ": not a MOWETEST file"});
  write_framed_file(path(), "MOWETEST", 3, payload_);
  expect_error([&] { read(); },
               {path() + ": format version 3, this build reads up to 1: use a newer mowe"});
  overwrite(path(), "plain text that is long enough to hold a header");
  expect_error([&] { read(); }, {path() + ": not a MOWETEST file"});
}

TEST_F(FramedFile, EveryTruncationAndFlipIsAnErrorNeverACrash) {
  write_framed_file(path(), "MOWETEST", 1, payload_);
  const std::string good = slurp(path());
  for (size_t size = 0; size < good.size(); ++size) {
    overwrite(path(), good.substr(0, size));
    EXPECT_THROW(read(), Error) << "truncated to " << size;
  }
  for (size_t i = 0; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] ^= 0x80;
    overwrite(path(), bad);
    EXPECT_THROW(read(), Error) << "byte " << i << " flipped";
  }
}

// ---- layout -----------------------------------------------------------------------------------

std::vector<TensorSpec> example_specs() {
  return {
      {"dense/a", DType::F32, Shape{3, 5}, "dense.bin", 0},       // 60 bytes
      {"dense/b", DType::F64, Shape{7}, "dense.bin", 0},          // 56 bytes
      {"experts/w", DType::F32, Shape{10, 6}, "experts.bin", 4},  // rows of 24 bytes, 3 chunks
      {"dense/scalar", DType::I32, Shape{}, "dense.bin", 0},      // 4 bytes
      {"experts/v", DType::F32, Shape{5, 3}, "experts.bin", 2},   // rows of 12 bytes, 3 chunks
      {"experts/bias", DType::BF16, Shape{3}, "experts.bin", 8},  // one chunk: chunk_rows >= rows
  };
}

TEST(LayoutPlan, OffsetsAlignmentAndChunks) {
  const Layout layout = Layout::plan(example_specs());
  ASSERT_EQ(layout.entries().size(), 6u);
  EXPECT_EQ(layout.at("dense/a").offset, 0);
  EXPECT_EQ(layout.at("dense/b").offset, 64);
  EXPECT_EQ(layout.at("dense/scalar").offset, 128);
  EXPECT_EQ(layout.at("dense/scalar").rows, 1);
  EXPECT_EQ(layout.at("dense/scalar").row_bytes, 4);

  const Layout::Entry& w = layout.at("experts/w");
  EXPECT_EQ(w.offset, 0);
  EXPECT_EQ(w.rows, 10);
  EXPECT_EQ(w.row_bytes, 24);
  EXPECT_EQ(w.num_chunks, 3);
  EXPECT_EQ(w.chunk_stride, 4096);
  EXPECT_EQ(w.chunk_offset(2), 8192);
  EXPECT_EQ(w.chunk_bytes(0), 96);
  EXPECT_EQ(w.chunk_bytes(2), 48);  // 2 rows
  const Layout::Entry& v = layout.at("experts/v");
  EXPECT_EQ(v.offset, 12288);  // 8192 + 48 rounded up to a page
  EXPECT_EQ(v.num_chunks, 3);
  EXPECT_EQ(v.chunk_bytes(2), 12);
  const Layout::Entry& bias = layout.at("experts/bias");
  EXPECT_EQ(bias.num_chunks, 1);
  EXPECT_EQ(bias.spec.chunk_rows, 3);
  // After a multi-chunk tensor, the next one starts on a new page: 12288 + 8192 + 12 = 20492.
  EXPECT_EQ(bias.offset, 24576);

  const std::vector<std::pair<std::string, int64_t>> files = {{"dense.bin", 132},
                                                              {"experts.bin", 24582}};
  EXPECT_EQ(layout.file_sizes(), files);
  EXPECT_EQ(layout.total_chunks(), 1 + 1 + 3 + 1 + 3 + 1);
  EXPECT_EQ(layout.chunk_index("dense/a", 0), 0);
  EXPECT_EQ(layout.chunk_index("experts/w", 2), 4);
  EXPECT_EQ(layout.chunk_index("experts/bias", 0), 9);

  // Deterministic: the same specs give the same layout.
  const Layout again = Layout::plan(example_specs());
  for (size_t i = 0; i < layout.entries().size(); ++i) {
    EXPECT_EQ(again.entries()[i].offset, layout.entries()[i].offset);
    EXPECT_EQ(again.entries()[i].chunk_stride, layout.entries()[i].chunk_stride);
  }
  expect_error([&] { layout.at("nope"); }, {"no tensor 'nope'"});
  EXPECT_EQ(layout.find("nope"), nullptr);
}

TEST(LayoutPlan, RefusesBadSpecs) {
  std::vector<TensorSpec> specs = example_specs();
  specs.push_back({"dense/a", DType::F32, Shape{1}, "dense.bin", 0});
  expect_error([&] { Layout::plan(specs); }, {"tensor 'dense/a' appears twice"});
  expect_error(
      [&] {
        Layout::plan({{"t", DType::F32, Shape{1}, "../escape.bin", 0}});
      },
      {"tensor 't'", "'../escape.bin' is not a valid data file name"});
  expect_error(
      [&] {
        Layout::plan({{"t", DType::F32, Shape{1}, "manifest.pb", 0}});
      },
      {"tensor 't'", "not a valid data file name"});
  expect_error(
      [&] {
        Layout::plan({{"t", DType::F32, Shape{4}, "a.bin", -1}});
      },
      {"tensor 't': chunk_rows -1 is negative"});
}

CheckpointManifest example_manifest(const Layout& layout) {
  std::vector<uint32_t> crcs(layout.total_chunks());
  std::iota(crcs.begin(), crcs.end(), 100u);
  CheckpointManifest m;
  layout.fill_manifest(&m, crcs);
  return m;
}

TEST(LayoutManifest, RoundTripAndValidation) {
  const Layout layout = Layout::plan(example_specs());
  const CheckpointManifest m = example_manifest(layout);
  ASSERT_EQ(m.tensors_size(), 6);
  EXPECT_EQ(m.tensors(2).name(), "experts/w");
  EXPECT_EQ(m.tensors(2).dtype(), "f32");
  EXPECT_EQ(m.tensors(2).chunk_rows(), 4);
  EXPECT_EQ(m.tensors(2).chunk_stride(), 4096);
  ASSERT_EQ(m.tensors(2).chunk_crc32c_size(), 3);
  EXPECT_EQ(m.tensors(2).chunk_crc32c(1), 103u);
  EXPECT_EQ(m.files(1).size(), 24582);

  const Layout back = Layout::from_manifest(m);
  ASSERT_EQ(back.entries().size(), layout.entries().size());
  for (size_t i = 0; i < layout.entries().size(); ++i) {
    const Layout::Entry& a = layout.entries()[i];
    const Layout::Entry& b = back.entries()[i];
    EXPECT_EQ(b.spec.name, a.spec.name);
    EXPECT_EQ(b.spec.dtype, a.spec.dtype);
    EXPECT_TRUE(b.spec.shape == a.spec.shape);
    EXPECT_EQ(b.offset, a.offset);
    EXPECT_EQ(b.chunk_stride, a.chunk_stride);
    EXPECT_EQ(b.num_chunks, a.num_chunks);
    EXPECT_EQ(b.spec.chunk_rows, a.spec.chunk_rows);
  }
  EXPECT_EQ(back.file_sizes(), layout.file_sizes());

  auto damaged = [&](auto edit, std::initializer_list<std::string> parts) {
    CheckpointManifest bad = m;
    edit(&bad);
    expect_error([&] { Layout::from_manifest(bad); }, parts);
  };
  damaged([](auto* b) { b->mutable_tensors(1)->set_dtype("f16"); },
          {"tensor 'dense/b': unknown dtype 'f16'"});
  damaged([](auto* b) { b->mutable_tensors(0)->set_shape(1, -5); },
          {"tensor 'dense/a': negative dimension -5"});
  damaged([](auto* b) { b->mutable_tensors(1)->set_offset(32); },
          {"tensors 'dense/a' and 'dense/b' overlap in 'dense.bin'"});
  damaged([](auto* b) { b->mutable_files(0)->set_size(125); },
          {"tensor 'dense/scalar': bytes 128..132 lie beyond the end of 'dense.bin' (125 bytes)"});
  damaged([](auto* b) { b->mutable_tensors(2)->add_chunk_crc32c(1); },
          {"tensor 'experts/w': 4 chunk CRCs for 3 chunks"});
  damaged([](auto* b) { b->mutable_tensors(2)->set_chunk_rows(11); },
          {"tensor 'experts/w': chunk_rows 11 does not fit its 10 rows"});
  damaged([](auto* b) { b->mutable_tensors(2)->set_chunk_stride(50); },
          {"tensor 'experts/w': chunk_stride 50 is smaller than a chunk (96 bytes)"});
  damaged([](auto* b) { b->mutable_tensors(4)->set_file("other.bin"); },
          {"tensor 'experts/v': data file 'other.bin' is not listed"});
  damaged([](auto* b) { b->mutable_tensors(4)->set_name("experts/w"); },
          {"tensor 'experts/w' appears twice"});
  damaged([](auto* b) { b->mutable_tensors(0)->set_offset(int64_t{1} << 62); },
          {"tensor 'dense/a'"});
  damaged([](auto* b) { b->mutable_tensors(0)->set_shape(1, int64_t{1} << 62); },
          {"tensor 'dense/a': its size overflows 64 bits"});
}

// A manifest with valid framing but arbitrary numbers (a bug elsewhere, or a crafted file) is
// refused or accepted, never read out of bounds or overflowed (run under the sanitizer build).
TEST(LayoutManifest, ArbitraryNumbersNeverCrash) {
  const CheckpointManifest m = example_manifest(Layout::plan(example_specs()));
  std::mt19937_64 rng(11);
  const int64_t extremes[] = {0,
                              1,
                              -1,
                              7,
                              4096,
                              int64_t{1} << 31,
                              int64_t{1} << 62,
                              std::numeric_limits<int64_t>::max(),
                              std::numeric_limits<int64_t>::min()};
  auto pick = [&] { return extremes[rng() % std::size(extremes)]; };
  int accepted = 0;
  for (int trial = 0; trial < 2000; ++trial) {
    CheckpointManifest bad = m;
    for (int edits = 1 + rng() % 3; edits > 0; --edits) {
      TensorRecord* t = bad.mutable_tensors(rng() % bad.tensors_size());
      switch (rng() % 5) {
        case 0:
          t->set_offset(pick());
          break;
        case 1:
          t->set_chunk_rows(pick());
          break;
        case 2:
          t->set_chunk_stride(pick());
          break;
        case 3:
          if (t->shape_size() > 0) t->set_shape(rng() % t->shape_size(), pick());
          break;
        case 4:
          bad.mutable_files(rng() % bad.files_size())->set_size(pick());
          break;
      }
    }
    try {
      const Layout layout = Layout::from_manifest(bad);
      for (const auto& e : layout.entries()) {
        const int64_t size = std::find_if(layout.file_sizes().begin(), layout.file_sizes().end(),
                                          [&](const auto& f) { return f.first == e.spec.file; })
                                 ->second;
        EXPECT_LE(e.chunk_offset(e.num_chunks - 1) + e.chunk_bytes(e.num_chunks - 1), size);
      }
      ++accepted;
    } catch (const Error&) {
    }
  }
  EXPECT_LT(accepted, 2000);
}

// ---- a checkpoint written by three processes --------------------------------------------------

// The tensors of a small model: an expert tensor written by three processes, chunk by chunk, and
// dense tensors written whole.
struct Model {
  static constexpr int64_t kExperts = 103, kWidth = 7, kChunkRows = 10;  // 11 chunks, last 3 rows
  std::vector<float> experts;
  std::vector<double> dense;
  int32_t step_count = 0;

  explicit Model(uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> u(-1, 1);
    experts.resize(kExperts * kWidth);
    for (float& x : experts) x = static_cast<float>(u(rng));
    dense.resize(5 * 3);
    for (double& x : dense) x = u(rng);
    step_count = static_cast<int32_t>(seed);
  }

  static Layout layout() {
    return Layout::plan(
        {{"experts", DType::F32, Shape{kExperts, kWidth}, "experts.bin", kChunkRows},
         {"dense", DType::F64, Shape{5, 3}, "dense.bin", 0},
         {"step_count", DType::I32, Shape{}, "dense.bin", 0}});
  }

  // Writes the checkpoint as three processes would, merging their CRCs; returns its path.
  std::string save(const std::string& dir, int64_t step) const {
    const Layout layout = Model::layout();
    check_checkpoint_directory(dir);
    const std::string tmp = begin_checkpoint(dir, step, layout);
    // Chunks owned by each writer: [0, 4), [4, 8), [8, 11).
    const int64_t owned[3][2] = {{0, 4}, {4, 8}, {8, 11}};
    std::vector<uint32_t> crcs(layout.total_chunks(), 0);
    std::vector<int> writers_of(layout.total_chunks(), 0);
    for (int w = 0; w < 3; ++w) {
      ChunkWriter writer(tmp, layout);
      const auto [first, end] = owned[w];
      writer.write_chunks("experts", first, end - first,
                          experts.data() + first * kChunkRows * kWidth);
      if (w == 0) writer.write_tensor("dense", dense.data());
      if (w == 2) writer.write_tensor("step_count", &step_count);
      writer.sync();
      for (int64_t g = 0; g < layout.total_chunks(); ++g) {
        if (!writer.written()[g]) continue;
        crcs[g] = writer.crcs()[g];
        ++writers_of[g];
      }
    }
    for (int64_t g = 0; g < layout.total_chunks(); ++g)
      EXPECT_EQ(writers_of[g], 1) << "global chunk " << g;
    CheckpointManifest manifest;
    layout.fill_manifest(&manifest, crcs);
    manifest.set_config("training { steps: 10 }");
    Fingerprint* f = manifest.add_fingerprints();
    f->set_name("routing_vocab");
    f->set_value(0x0123456789abcdefull);
    manifest.set_world_size(3);
    manifest.set_user_state(std::string("\x00\x01trainer", 9));
    commit_checkpoint(dir, tmp, step, manifest);
    return dir + "/" + checkpoint_name(step);
  }
};

class CheckpointRoundTrip : public CheckpointTest {};

TEST_F(CheckpointRoundTrip, ThreeWritersReadBackBitIdentically) {
  const Model model(42);
  const std::string path = model.save(dir_.string(), 10);
  EXPECT_EQ(path, (dir_ / "step-00000010").string());
  EXPECT_EQ(read_latest(dir_.string()), "step-00000010");
  EXPECT_EQ(slurp(dir_ / "latest"), "step-00000010\n");
  EXPECT_FALSE(fs::exists(dir_ / ".tmp-step-00000010"));

  const CheckpointReader reader(path);
  EXPECT_EQ(reader.manifest().step(), 10);
  EXPECT_EQ(reader.manifest().format_version(), 1u);
  EXPECT_EQ(reader.manifest().config(), "training { steps: 10 }");
  EXPECT_EQ(reader.manifest().world_size(), 3);
  EXPECT_EQ(reader.manifest().fingerprints(0).value(), 0x0123456789abcdefull);
  EXPECT_EQ(reader.manifest().user_state(), std::string("\x00\x01trainer", 9));
  EXPECT_GT(reader.manifest().created_unix_s(), 1600000000);
  reader.expect("experts", DType::F32, Shape{Model::kExperts, Model::kWidth});
  expect_error(
      [&] {
        reader.expect("experts", DType::F32, Shape{Model::kExperts, 8});
      },
      {"tensor 'experts' is f32[103, 7], this model expects f32[103, 8]"});
  expect_error([&] { reader.expect("missing", DType::F32, Shape{1}); },
               {"checkpoint " + path + " has no tensor 'missing'"});

  std::vector<float> experts(model.experts.size());
  reader.read_tensor("experts", experts.data());
  EXPECT_EQ(std::memcmp(experts.data(), model.experts.data(), experts.size() * 4), 0);
  std::vector<double> dense(model.dense.size());
  reader.read_tensor("dense", dense.data());
  EXPECT_EQ(std::memcmp(dense.data(), model.dense.data(), dense.size() * 8), 0);
  int32_t step_count = 0;
  reader.read_tensor("step_count", &step_count);
  EXPECT_EQ(step_count, 42);

  // Row ranges inside one chunk, across chunk boundaries, the short last chunk, and random ones:
  // what another world size's shards would ask for.
  std::mt19937_64 rng(3);
  std::vector<std::pair<int64_t, int64_t>> ranges = {{0, 1},  {7, 25},  {9, 2},   {10, 10},
                                                     {95, 8}, {100, 3}, {102, 1}, {50, 0}};
  for (int i = 0; i < 40; ++i) {
    const int64_t first = rng() % Model::kExperts;
    ranges.emplace_back(first, rng() % (Model::kExperts - first + 1));
  }
  for (const auto& [first, n] : ranges) {
    std::vector<float> rows(n * Model::kWidth + 1, -7.0f);
    reader.read_rows("experts", first, n, rows.data());
    EXPECT_EQ(std::memcmp(rows.data(), model.experts.data() + first * Model::kWidth,
                          n * Model::kWidth * 4),
              0)
        << "rows " << first << " + " << n;
    EXPECT_EQ(rows.back(), -7.0f) << "wrote past the end for rows " << first << " + " << n;
  }
  EXPECT_EQ(reader.verify_all(), (Model::kExperts * Model::kWidth * 4) + 15 * 8 + 4);
}

TEST_F(CheckpointRoundTrip, DamagedDataNamesTensorAndChunk) {
  const std::string path = Model(1).save(dir_.string(), 10);
  const CheckpointReader good(path);
  const Layout::Entry& e = good.layout().at("experts");
  const uint32_t recorded = good.manifest().tensors(0).chunk_crc32c(5);
  flip_byte(fs::path(path) / "experts.bin", e.chunk_offset(5) + 3);

  const CheckpointReader reader(path);  // sizes are right: only reading finds the damage
  std::vector<float> rows(Model::kExperts * Model::kWidth);
  const Model model(1);
  std::string bytes =
      slurp(fs::path(path) / "experts.bin").substr(e.chunk_offset(5), e.chunk_bytes(5));
  const std::string message = fmt::format(
      "checkpoint {}: tensor 'experts' chunk 5 (rows 50..59 of experts.bin) is damaged: CRC32C {}, "
      "the manifest says {}",
      path, hex(crc32c(bytes.data(), bytes.size())), hex(recorded));
  expect_error([&] { reader.read_rows("experts", 55, 1, rows.data()); }, {message});
  expect_error([&] { reader.read_rows("experts", 30, 40, rows.data()); }, {message});
  expect_error([&] { reader.verify_all(); }, {message});
  // The chunks around it are still readable.
  reader.read_rows("experts", 40, 10, rows.data());
  EXPECT_EQ(std::memcmp(rows.data(), model.experts.data() + 40 * Model::kWidth, 10 * 7 * 4), 0);
  reader.read_rows("experts", 60, 43, rows.data());
  EXPECT_EQ(std::memcmp(rows.data(), model.experts.data() + 60 * Model::kWidth, 43 * 7 * 4), 0);
}

TEST_F(CheckpointRoundTrip, TruncatedOrMissingFilesAreNamed) {
  const std::string path = Model(2).save(dir_.string(), 10);
  const fs::path dense = fs::path(path) / "dense.bin";
  const int64_t size = static_cast<int64_t>(fs::file_size(dense));
  fs::resize_file(dense, size - 3);
  expect_error([&] { CheckpointReader r(path); },
               {fmt::format("checkpoint {}: data file {} has {} bytes, the manifest says {}: the "
                            "checkpoint is truncated",
                            path, dense.string(), size - 3, size)});
  fs::remove(dense);
  expect_error([&] { CheckpointReader r(path); },
               {fmt::format("checkpoint {}: data file {} is missing", path, dense.string())});
}

TEST_F(CheckpointRoundTrip, DamagedManifestIsAnErrorNeverACrash) {
  const std::string path = Model(3).save(dir_.string(), 10);
  const fs::path manifest = fs::path(path) / "manifest.pb";
  const std::string good = slurp(manifest);
  overwrite(manifest, good.substr(0, good.size() / 2));
  expect_error([&] { CheckpointReader r(path); },
               {manifest.string() + ": truncated: the header announces"});
  for (size_t size = 0; size < good.size(); size += 7) {
    overwrite(manifest, good.substr(0, size));
    EXPECT_THROW(CheckpointReader r(path), Error) << "manifest truncated to " << size;
  }
  // A well-framed payload that is not a manifest.
  write_framed_file(manifest.string(), "MOWECKPT", 1, "\xff\xff\xff garbage");
  expect_error([&] { CheckpointReader r(path); },
               {manifest.string() + ": damaged: the payload is not a checkpoint manifest"});
  // A well-framed manifest whose layout is inconsistent: named with the manifest's path.
  CheckpointManifest m;
  ASSERT_TRUE(m.ParseFromString(good.substr(24)));
  m.mutable_tensors(0)->set_offset(8);
  write_framed_file(manifest.string(), "MOWECKPT", 1, m.SerializeAsString());
  expect_error([&] { CheckpointReader r(path); }, {manifest.string() + ": tensor 'experts'"});
  fs::remove(manifest);
  expect_error([&] { CheckpointReader r(path); }, {manifest.string() + ": missing file"});
}

TEST_F(CheckpointRoundTrip, FailedWriteNamesThePath) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full to simulate a full disk";
  const Layout layout = Model::layout();
  const std::string tmp = begin_checkpoint(dir_.string(), 5, layout);
  const std::string file = tmp + "/experts.bin";
  fs::remove(file);
  fs::create_symlink("/dev/full", file);
  ChunkWriter writer(tmp, layout);
  const Model model(5);
  expect_error([&] { writer.write_chunks("experts", 0, 1, model.experts.data()); },
               {"cannot write " + file +
                " (280 bytes at offset 0): No space left on device (free "
                "space there or choose another directory)"});

  // A writer that does not see the files begin_checkpoint made.
  ChunkWriter lost((dir_ / "elsewhere").string(), layout);
  expect_error([&] { lost.write_tensor("dense", model.dense.data()); },
               {"cannot open " + (dir_ / "elsewhere/dense.bin").string(),
                "No such file or directory", "file system every process sees"});
}

// ---- the directory protocol -------------------------------------------------------------------

class CheckpointDirectory : public CheckpointTest {};

TEST_F(CheckpointDirectory, NamesAndLatest) {
  EXPECT_EQ(checkpoint_name(10), "step-00000010");
  EXPECT_EQ(checkpoint_name(123456789), "step-123456789");
  EXPECT_EQ(read_latest(dir_.string()), std::nullopt);
  EXPECT_TRUE(list_checkpoints((dir_ / "absent").string()).empty());
  overwrite(dir_ / "latest", "garbage\n");
  expect_error([&] { read_latest(dir_.string()); },
               {(dir_ / "latest").string() + " holds 'garbage', not a checkpoint name"});
}

TEST_F(CheckpointDirectory, ListingAndRetention) {
  const std::string dir = dir_.string();
  for (int64_t step : {10, 20, 30, 40}) Model(step).save(dir, step);
  EXPECT_EQ(read_latest(dir), "step-00000040");
  // Not complete checkpoints: in progress, without a manifest, a stray file, another name.
  fs::create_directories(dir_ / ".tmp-step-00000050");
  overwrite(dir_ / ".tmp-step-00000050/experts.bin", "partial");
  fs::create_directories(dir_ / "step-00000045");
  overwrite(dir_ / "step-00000099", "a file, not a directory");
  fs::create_directories(dir_ / "notes");

  std::vector<CheckpointInfo> list = list_checkpoints(dir);
  ASSERT_EQ(list.size(), 4u);
  EXPECT_EQ(list[0].step, 40);
  EXPECT_EQ(list[0].name, "step-00000040");
  EXPECT_EQ(list[0].path, (dir_ / "step-00000040").string());
  EXPECT_EQ(list[3].step, 10);

  // `latest` names an older checkpoint (say, a run resumed from it): it is kept as well.
  write_file_atomically((dir_ / "latest").string(), "step-00000020\n");
  std::vector<std::string> removed = remove_old_checkpoints(dir, 2);
  std::sort(removed.begin(), removed.end());
  EXPECT_EQ(removed, (std::vector<std::string>{".tmp-step-00000050", "step-00000010"}));
  list = list_checkpoints(dir);
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[0].name, "step-00000040");
  EXPECT_EQ(list[1].name, "step-00000030");
  EXPECT_EQ(list[2].name, "step-00000020");
  EXPECT_TRUE(fs::exists(dir_ / "step-00000045"));
  EXPECT_TRUE(fs::exists(dir_ / "notes"));
  CheckpointReader(list[2].path).verify_all();
}

TEST_F(CheckpointDirectory, RecommittingAStepReplacesIt) {
  const std::string dir = dir_.string();
  Model(1).save(dir, 10);
  const Model second(2);
  second.save(dir, 10);
  const CheckpointReader reader(dir + "/step-00000010");
  std::vector<float> experts(second.experts.size());
  reader.read_tensor("experts", experts.data());
  EXPECT_EQ(std::memcmp(experts.data(), second.experts.data(), experts.size() * 4), 0);
  std::vector<std::string> entries;
  for (const auto& e : fs::directory_iterator(dir_)) entries.push_back(e.path().filename());
  std::sort(entries.begin(), entries.end());
  EXPECT_EQ(entries, (std::vector<std::string>{"latest", "step-00000010"}));
}

// A crash in the middle of replacing step-N without RENAME_EXCHANGE (NFS) leaves no step-N: the
// complete new .tmp-step-N is taken, else the complete old .old-step-N; never a partial one.
TEST_F(CheckpointDirectory, ListingRecoversAnInterruptedReplacement) {
  const std::string dir = dir_.string();
  Model(1).save(dir, 10);
  Model(2).save(dir, 20);
  fs::rename(dir_ / "step-00000020", dir_ / ".old-step-00000020");
  std::vector<CheckpointInfo> list = list_checkpoints(dir);
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].name, ".old-step-00000020");
  EXPECT_EQ(list[0].step, 20);
  Model(3).save(dir, 30);
  fs::rename(dir_ / "step-00000030", dir_ / ".tmp-step-00000020");  // complete: has a manifest
  list = list_checkpoints(dir);
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].name, ".tmp-step-00000020");
  CheckpointReader(list[0].path).verify_all();
  // Once step-20 exists again, it wins, and retention clears the leftovers.
  Model(4).save(dir, 20);
  list = list_checkpoints(dir);
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].name, "step-00000020");
  remove_old_checkpoints(dir, 5);
  EXPECT_FALSE(fs::exists(dir_ / ".tmp-step-00000020"));
  EXPECT_FALSE(fs::exists(dir_ / ".old-step-00000020"));
}

TEST_F(CheckpointDirectory, LaterStepsOfAnAbandonedHistoryAreRemoved) {
  const std::string dir = dir_.string();
  for (int64_t step : {10, 20, 30}) Model(step).save(dir, step);
  EXPECT_EQ(remove_later_checkpoints(dir, 15),
            (std::vector<std::string>{"step-00000030", "step-00000020"}));
  const std::vector<CheckpointInfo> list = list_checkpoints(dir);
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].step, 10);
  EXPECT_TRUE(remove_later_checkpoints(dir, 10).empty());
}

TEST_F(CheckpointDirectory, AFifoInPlaceOfAFileIsRefusedNotWaitedFor) {
  const std::string dir = dir_.string();
  Model(1).save(dir, 10);
  const fs::path dense = dir_ / "step-00000010/dense.bin";
  fs::remove(dense);
  ASSERT_EQ(::mkfifo(dense.c_str(), 0644), 0);
  expect_error([&] { CheckpointReader reader(dir + "/step-00000010"); },
               {dense.string(), "not a regular file"});
}

TEST_F(CheckpointDirectory, BeginRemovesAStaleAttempt) {
  fs::create_directories(dir_ / ".tmp-step-00000060");
  overwrite(dir_ / ".tmp-step-00000060/junk", "left by a crash");
  const Layout layout = Model::layout();
  const std::string tmp = begin_checkpoint(dir_.string(), 60, layout);
  EXPECT_EQ(tmp, (dir_ / ".tmp-step-00000060").string());
  EXPECT_FALSE(fs::exists(dir_ / ".tmp-step-00000060/junk"));
  for (const auto& [name, size] : layout.file_sizes())
    EXPECT_EQ(static_cast<int64_t>(fs::file_size(fs::path(tmp) / name)), size) << name;
  EXPECT_TRUE(list_checkpoints(dir_.string()).empty());
}

TEST_F(CheckpointDirectory, CheckDirectory) {
  const std::string nested = (dir_ / "a/b/c").string();
  check_checkpoint_directory(nested, "training.checkpoint_dir");
  EXPECT_TRUE(fs::is_directory(nested));
  EXPECT_TRUE(fs::is_empty(nested));  // the probe file is gone

  const std::string file = (dir_ / "plain").string();
  overwrite(file, "x");
  expect_error([&] { check_checkpoint_directory(file, "training.checkpoint_dir"); },
               {"training.checkpoint_dir '" + file + "' is not a directory"});
  expect_error([&] { check_checkpoint_directory(file + "/sub", "training.checkpoint_dir"); },
               {"training.checkpoint_dir '" + file + "/sub' cannot be created: Not a directory"});

  // Not writable: permission bits for an ordinary user; root ignores them, so a read-only
  // system directory stands in.
  std::string readonly;
  if (::geteuid() != 0) {
    readonly = (dir_ / "readonly").string();
    fs::create_directories(readonly);
    ::chmod(readonly.c_str(), 0555);
  } else if (fs::is_directory("/sys")) {
    readonly = "/sys";  // sysfs refuses new files, even to root
  }
  if (readonly.empty()) GTEST_SKIP() << "no unwritable directory to test with";
  expect_error([&] { check_checkpoint_directory(readonly, "training.checkpoint_dir"); },
               {"training.checkpoint_dir '" + readonly + "' is not writable: "});
  if (readonly != "/sys") ::chmod(readonly.c_str(), 0755);
}

}  // namespace
}  // namespace mowe::checkpoint
