// Whole-file reads and atomic writes: a file is written under a temporary name in the same
// directory, flushed to disk and renamed, so an interrupted run never leaves half a file behind.
// In runtime/ because data files, dispatch plans and checkpoints all use them.
#pragma once

#include <string>

namespace mowe {

std::string read_file(const std::string& path, const char* what);

// Creates missing parent directories, writes path.tmp.<pid>, fsyncs it, renames it to path and
// fsyncs the parent directory, so after a crash the file is either the old or the new one.
void write_file_atomically(const std::string& path, const std::string& bytes);

// fsync of a directory: makes the creations, renames and removals of entries in it durable.
// Throws Error naming the directory.
void fsync_directory(const std::string& dir);

}  // namespace mowe
