// libFuzzer target: a checkpoint directory whose manifest.pb is the input, read by
// CheckpointReader (framed file, protobuf, version, Layout::from_manifest, data file sizes), then
// every tensor read and every chunk verified. Any input may be refused with mowe::Error; a crash,
// a sanitizer report, another exception or an allocation beyond -rss_limit_mb is a bug.
//
// The first input byte chooses what the rest is: odd, a manifest payload that the target frames
// itself with a correct CRC (so the fuzzer explores the protobuf and the layout checks, which a
// random byte string never reaches past the CRC); even, the whole file as it lies on disk.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "runtime/check.h"
#include "runtime/checkpoint/crc32c.h"
#include "runtime/checkpoint/reader.h"

namespace {

namespace fs = std::filesystem;

// A checkpoint directory with data files of the tiny config's sizes (so the committed seed, a
// real tiny checkpoint's manifest, passes the size checks and reaches the chunk reads).
const std::string& directory() {
  static const std::string dir = [] {
    spdlog::set_level(spdlog::level::off);  // MOWE_CHECK logs before throwing
    const fs::path d =
        fs::temp_directory_path() / ("mowe_fuzz_manifest_" + std::to_string(getpid()));
    fs::create_directories(d);
    for (const auto& [name, size] : {std::pair{"dense.bin", 137856}, {"experts.bin", 245760}}) {
      std::ofstream f(d / name, std::ios::binary | std::ios::trunc);
      const std::string bytes(static_cast<size_t>(size), '\x3c');
      f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    }
    return d.string();
  }();
  return dir;
}

void put_le(std::string* out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string& dir = directory();
  const std::string body(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string file;
  if (data[0] & 1) {
    file = mowe::checkpoint::kManifestMagic;
    put_le(&file, mowe::checkpoint::kFormatVersion, 4);
    put_le(&file, body.size(), 8);
    put_le(&file, mowe::checkpoint::crc32c(body.data(), body.size()), 4);
    file += body;
  } else {
    file = body;
  }
  {
    std::ofstream f(dir + "/manifest.pb", std::ios::binary | std::ios::trunc);
    f.write(file.data(), static_cast<std::streamsize>(file.size()));
  }
  try {
    const mowe::checkpoint::CheckpointReader reader(dir);
    for (const auto& e : reader.layout().entries()) {
      try {
        std::vector<char> buffer(static_cast<size_t>(e.bytes()));
        reader.read_tensor(e.spec.name, buffer.data());
      } catch (const mowe::Error&) {
      }
    }
    reader.verify_all();
  } catch (const mowe::Error&) {
  }
  return 0;
}
