// The routing vocabulary file without a tokenizer: its frame (magic, version, CRC32C) and what a
// damaged, truncated, old or foreign file is refused with: the file's name, what is wrong and
// the exact mowe_vocab command that rebuilds it.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "data/routing_vocab.h"
#include "runtime/check.h"
#include "runtime/config/config.h"
#include "runtime/files.h"
#include "tests/util/expect_error.h"

namespace mowe::data {
namespace {

using mowe::testing::expect_error;

namespace fs = std::filesystem;

// Plain writes: the atomic, fsynced kind would make a thousand damaged copies slow.
void overwrite(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

class RoutingVocabFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / fmt::format("routing_vocab_file_test.{}", ::getpid());
    fs::create_directories(dir_);
    path_ = (dir_ / "vocab.pb").string();
    // The command line messages repeat in their rebuild commands.
    const char* argv[] = {"test", "--config", "configs/tiny.textproto", "--set", "data.seed=5"};
    config::parse_common_flags(5, const_cast<char**>(argv));
    // 40 pieces, 30 words, frequencies for all 70 routing ids.
    file_.set_format_version(RoutingVocab::kFormatVersion);
    file_.set_tokenizer_hash(77);
    file_.set_default_vocab_size(40);
    for (int w = 0; w < 30; ++w) {
      RoutingEntry* e = file_.add_entries();
      e->set_word("w" + std::to_string(w));
      e->add_tokens(w % 40), e->add_tokens((w + 3) % 40);
    }
    for (int id = 0; id < 70; ++id) file_.add_frequency(1000 / (id + 1));
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string rebuild() const {
    return "rebuild it with mowe_vocab --config configs/tiny.textproto --set data.seed=5";
  }

  fs::path dir_;
  std::string path_;
  RoutingVocabFile file_;
};

TEST_F(RoutingVocabFileTest, RoundTripThroughTheFrame) {
  RoutingVocab::from_file(file_).save(path_);
  const std::string bytes = read_file(path_, "test file");
  EXPECT_EQ(bytes.substr(0, 8), "MOWEVOCB");
  EXPECT_EQ(bytes[8], RoutingVocab::kFormatVersion);  // little-endian
  const RoutingVocab back = RoutingVocab::load(path_);
  EXPECT_EQ(back.file().SerializeAsString(), file_.SerializeAsString());
  EXPECT_EQ(back.size(), 70);
}

TEST_F(RoutingVocabFileTest, EveryFlippedBitIsRefusedNamingTheFileAndTheCommand) {
  RoutingVocab::from_file(file_).save(path_);
  const std::string good = read_file(path_, "test file");
  for (size_t byte = 0; byte < good.size(); ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string bad = good;
      bad[byte] = static_cast<char>(bad[byte] ^ (1 << bit));
      overwrite(path_, bad);
      std::string what = "(accepted)";
      try {
        RoutingVocab::load(path_);
      } catch (const Error& e) {
        what = e.what();
      }
      ASSERT_NE(what.find("routing vocabulary " + path_), std::string::npos) << what;
      ASSERT_NE(what.find("damaged"), std::string::npos) << "byte " << byte << ": " << what;
      ASSERT_NE(what.find(rebuild()), std::string::npos) << what;
    }
  }
  // One frequency's bit: before framing this passed as another vocabulary (and the plan was
  // then reported stale); now it is the checksum.
  std::string bad = good;
  bad[good.size() - 20] ^= 0x01;
  overwrite(path_, bad);
  expect_error([&] { RoutingVocab::load(path_); },
               {"routing vocabulary " + path_ +
                    " is damaged or truncated (checksum mismatch: CRC32C of the payload is ",
                rebuild()});
}

TEST_F(RoutingVocabFileTest, TruncatedFilesAreRefused) {
  RoutingVocab::from_file(file_).save(path_);
  const std::string good = read_file(path_, "test file");
  for (size_t size = 0; size < good.size(); ++size) {
    overwrite(path_, good.substr(0, size));
    expect_error([&] { RoutingVocab::load(path_); },
                 {"routing vocabulary " + path_ + " is damaged or truncated (", rebuild()});
  }
  overwrite(path_, good.substr(0, 10));
  expect_error([&] { RoutingVocab::load(path_); },
               {"routing vocabulary " + path_ +
                " is damaged or truncated (10 bytes, the header needs 24): " + rebuild()});
}

TEST_F(RoutingVocabFileTest, OldFormatAndForeignFilesAskForARebuild) {
  RoutingVocabFile old = file_;
  old.set_format_version(1);  // what format 1 wrote: the bare protobuf
  overwrite(path_, old.SerializeAsString());
  expect_error(
      [&] { RoutingVocab::load(path_); },
      {"routing vocabulary " + path_ +
       " was written by an older version of mowe (format 1, without a checksum): " + rebuild()});
  overwrite(path_, "a SentencePiece model, say, or any other file");
  expect_error([&] { RoutingVocab::load(path_); },
               {"routing vocabulary " + path_ +
                " is not a routing vocabulary file, or its header is damaged: " + rebuild()});
  expect_error([&] { RoutingVocab::load((dir_ / "missing.pb").string()); },
               {"routing vocabulary " + (dir_ / "missing.pb").string() +
                " does not exist: build it with mowe_vocab --config configs/tiny.textproto"});
}

TEST_F(RoutingVocabFileTest, ADirectoryIsRefusedNamingTheField) {
  const std::string dir = (dir_ / "a-directory").string();
  std::filesystem::create_directories(dir);
  expect_error(
      [&] { RoutingVocab::load(dir); },
      {"data.routing_vocab '" + dir + "' cannot be read as a routing vocabulary",
       "not a regular file", "set data.routing_vocab to the file, or " + rebuild().substr(2)});
}

TEST_F(RoutingVocabFileTest, ContentsThatPassTheChecksumButContradictThemselves) {
  RoutingVocabFile bad = file_;
  bad.add_frequency(5);  // 71 frequencies for 70 routing ids
  RoutingVocab::from_file(bad).save(path_);
  expect_error(
      [&] { RoutingVocab::load(path_); },
      {"routing vocabulary " + path_ + " holds 71 frequencies for 70 routing ids: " + rebuild()});
}

}  // namespace
}  // namespace mowe::data
