// Whole-file reads and atomic writes: a file is written under a temporary name in the same
// directory, flushed to disk and renamed, so an interrupted run never leaves half a file behind.
#pragma once

#include <string>

namespace mowe::data {

std::string read_file(const std::string& path, const char* what);

// Creates missing parent directories, writes path.tmp.<pid>, fsyncs it and renames it to path.
void write_file_atomically(const std::string& path, const std::string& bytes);

}  // namespace mowe::data
