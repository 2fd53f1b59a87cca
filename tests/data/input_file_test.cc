// Corpus files: resolving a directory, glob or list; reading plain, gzip and zstd files (made by
// the gzip and zstd command-line tools, an implementation independent of ours) line by line, with
// offsets that let a reader resume; damaged and cut-off files refused by name.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "data/input_file.h"
#include "runtime/check.h"

namespace mowe::data {
namespace {
namespace fs = std::filesystem;

class InputFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("mowe_input_file_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& bytes) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  }
  // Compresses `path` with the command-line tool, keeping the original.
  std::string compress(const std::string& path, const std::string& tool) {
    const std::string ext = tool == "gzip" ? ".gz" : ".zst";
    const std::string cmd = tool + " -q -c " + path + " > " + path + ext;
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    return path + ext;
  }
  static std::vector<std::string> lines_of(const std::string& path) {
    LineReader r(path);
    std::vector<std::string> lines;
    std::string line;
    while (r.next(&line)) lines.push_back(line);
    return lines;
  }

  fs::path dir_;
};

// Lines long and short, a blank one, an empty last line missing, a \r kept.
std::string sample_text(int n) {
  std::string s;
  for (int i = 0; i < n; ++i) {
    s += "line " + std::to_string(i);
    if (i % 7 == 0) s += std::string(70000 + i, 'x');  // longer than the reader's buffer
    if (i % 11 == 0) s += "\r";
    s += i % 13 == 0 ? "\n\n" : "\n";
  }
  return s + "last line without newline";
}

std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t nl; (nl = s.find('\n', start)) != std::string::npos; start = nl + 1)
    lines.push_back(s.substr(start, nl - start));
  if (start < s.size()) lines.push_back(s.substr(start));
  return lines;
}

TEST_F(InputFileTest, PlainGzipAndZstdGiveTheSameLines) {
  const std::string text = sample_text(300);
  const std::string plain = write("a.txt", text);
  const auto expected = split_lines(text);
  EXPECT_EQ(lines_of(plain), expected);
  EXPECT_EQ(lines_of(compress(plain, "gzip")), expected);
  EXPECT_EQ(lines_of(compress(plain, "zstd")), expected);
}

TEST_F(InputFileTest, ConcatenatedGzipMembersAndZstdFramesAreOneFile) {
  const std::string a = write("a.txt", "first\nsecond\n");
  const std::string b = write("b.txt", "third\n");
  for (const std::string tool : {"gzip", "zstd"}) {
    const std::string ca = compress(a, tool), cb = compress(b, tool);
    const std::string both = (dir_ / ("both" + fs::path(ca).extension().string())).string();
    ASSERT_EQ(std::system(("cat " + ca + " " + cb + " > " + both).c_str()), 0);
    EXPECT_EQ(lines_of(both), (std::vector<std::string>{"first", "second", "third"})) << tool;
  }
}

TEST_F(InputFileTest, OffsetsLetAReaderResumeAtAnyLine) {
  const std::string text = sample_text(120);
  const std::string plain = write("a.txt", text);
  for (const std::string& path : {plain, compress(plain, "gzip"), compress(plain, "zstd")}) {
    LineReader r(path);
    std::vector<int64_t> offsets;
    std::vector<std::string> lines;
    std::string line;
    for (offsets.push_back(r.offset()); r.next(&line); offsets.push_back(r.offset()))
      lines.push_back(line);
    for (size_t k : {size_t{0}, size_t{1}, size_t{17}, lines.size() - 1, lines.size()}) {
      LineReader again(path);
      again.skip_to(offsets[k]);
      if (k < lines.size()) {
        EXPECT_EQ(again.line_number(), static_cast<int64_t>(k));
      }
      std::vector<std::string> rest;
      while (again.next(&line)) rest.push_back(line);
      EXPECT_EQ(rest, std::vector<std::string>(lines.begin() + k, lines.end())) << path << " " << k;
    }
    LineReader past(path);
    EXPECT_THROW(past.skip_to(offsets.back() + 1), Error);
  }
}

TEST_F(InputFileTest, DamagedAndCutOffCompressedFilesAreRefusedByName) {
  const std::string plain = write("a.txt", sample_text(200));
  for (const std::string tool : {"gzip", "zstd"}) {
    const std::string packed = compress(plain, tool);
    std::string bytes;
    {
      std::ifstream in(packed, std::ios::binary);
      bytes.assign(std::istreambuf_iterator<char>(in), {});
    }
    const std::string cut =
        write("cut" + fs::path(packed).extension().string(), bytes.substr(0, bytes.size() / 2));
    try {
      lines_of(cut);
      ADD_FAILURE() << tool << ": a cut-off file was read";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(cut), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("cut off"), std::string::npos) << e.what();
    }
    std::string flipped = bytes;
    for (size_t i = bytes.size() / 3; i < bytes.size() / 3 + 64; ++i) flipped[i] ^= 0x5a;
    const std::string bad = write("bad" + fs::path(packed).extension().string(), flipped);
    try {
      lines_of(bad);
      ADD_FAILURE() << tool << ": a damaged file was read";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
    }
  }
  const std::string not_gzip = write("plain.gz", "this is not gzip\n");
  EXPECT_THROW(lines_of(not_gzip), Error);
  // After the last member: zero padding is ignored (as gzip does), other bytes are refused.
  const std::string packed = compress(write("p.txt", "one\ntwo\n"), "gzip");
  std::string bytes;
  {
    std::ifstream in(packed, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  EXPECT_EQ(lines_of(write("padded.gz", bytes + std::string(700, '\0'))),
            (std::vector<std::string>{"one", "two"}));
  try {
    lines_of(write("appended.gz", bytes + "more text\n"));
    ADD_FAILURE() << "trailing data was read";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("trailing data after its last gzip member"),
              std::string::npos)
        << e.what();
  }
}

TEST_F(InputFileTest, ResolvesFilesDirectoriesGlobsAndLists) {
  fs::create_directories(dir_ / "shards");
  for (const char* name : {"b.jsonl.gz", "a.jsonl", "c.jsonl.zst", ".hidden"})
    write(std::string("shards/") + name, "{}\n");
  const std::string d = (dir_ / "shards").string();
  EXPECT_EQ(resolve_corpus_files(d, "data.corpus_path"),
            (std::vector<std::string>{d + "/a.jsonl", d + "/b.jsonl.gz", d + "/c.jsonl.zst"}));
  EXPECT_EQ(resolve_corpus_files(d + "/*.jsonl*", "data.corpus_path"),
            (std::vector<std::string>{d + "/a.jsonl", d + "/b.jsonl.gz", d + "/c.jsonl.zst"}));
  EXPECT_EQ(resolve_corpus_files(d + "/a.jsonl", "data.corpus_path"),
            (std::vector<std::string>{d + "/a.jsonl"}));
  const std::string list =
      write("files.txt", "# shards in training order\nshards/c.jsonl.zst\n\n" + d + "/a.jsonl\n");
  EXPECT_EQ(resolve_corpus_files("@" + list, "data.corpus_path"),
            (std::vector<std::string>{(dir_ / "shards/c.jsonl.zst").string(), d + "/a.jsonl"}));

  auto message = [](const std::string& spec) {
    try {
      resolve_corpus_files(spec, "data.corpus_path");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(message(d + "/*.txt"),
            "data.corpus_path = \"" + d + "/*.txt\": the pattern matches no file");
  EXPECT_EQ(message(d + "/missing.jsonl"),
            "data.corpus_path = \"" + d + "/missing.jsonl\": no such file");
  const std::string bad_list = write("bad.txt", "shards/a.jsonl\nshards/gone.jsonl\n");
  EXPECT_EQ(message("@" + bad_list), "data.corpus_path = \"@" + bad_list + "\": line 2 names " +
                                         (dir_ / "shards/gone.jsonl").string() +
                                         ", which is not a file");
  fs::create_directories(dir_ / "empty");
  EXPECT_EQ(
      message((dir_ / "empty").string()),
      "data.corpus_path = \"" + (dir_ / "empty").string() + "\": the directory holds no file");
}

}  // namespace
}  // namespace mowe::data
