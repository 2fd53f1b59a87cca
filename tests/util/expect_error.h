// Test helper: expects a call to throw mowe::Error whose message contains given parts.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <initializer_list>
#include <source_location>
#include <string>

#include "runtime/check.h"

namespace mowe::testing {

// Expects f to throw Error whose message contains every one of `parts`; failures name the line
// of the call.
inline void expect_error(const std::function<void()>& f, std::initializer_list<std::string> parts,
                         std::source_location where = std::source_location::current()) {
  const ::testing::ScopedTrace trace(where.file_name(), static_cast<int>(where.line()),
                                     "expect_error");
  std::string what = "(no error)";
  try {
    f();
  } catch (const Error& e) {
    what = e.what();
  }
  for (const std::string& part : parts)
    EXPECT_NE(what.find(part), std::string::npos) << "'" << part << "' not in: " << what;
}

}  // namespace mowe::testing
