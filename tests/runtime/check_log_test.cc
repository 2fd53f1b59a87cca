#include <gtest/gtest.h>

#include <string>

#include "runtime/check.h"
#include "runtime/log.h"

namespace mowe {
namespace {

int fake_status(int v) {
  return v;
}
bool is_zero(int v) {
  return v == 0;
}
std::string describe(int v) {
  return "status " + std::to_string(v);
}

TEST(Check, GeneratorReportsExpressionDetailFileLineAndRank) {
  log::init({.rank = 3, .world_size = 4});
  try {
    MOWE_CHECK_GEN("FakeLib", fake_status(7), is_zero, describe);
    FAIL() << "must throw";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("FakeLib failed on rank 3"), std::string::npos) << msg;
    EXPECT_NE(msg.find("fake_status(7)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("status 7"), std::string::npos) << msg;
    EXPECT_NE(msg.find("check_log_test.cc:"), std::string::npos) << msg;
  }
  log::init({});
}

TEST(Check, PassingCheckEvaluatesOnce) {
  int calls = 0;
  auto call = [&] { return ++calls, 0; };
  MOWE_CHECK_GEN("FakeLib", call(), is_zero, describe);
  EXPECT_EQ(calls, 1);
}

TEST(Check, InvariantMessageIsFormatted) {
  try {
    MOWE_CHECK(1 + 1 == 3, "arithmetic says {}", 2);
    FAIL() << "must throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("1 + 1 == 3: arithmetic says 2"), std::string::npos)
        << e.what();
  }
}

TEST(Log, RejectsUnknownLevel) {
  try {
    log::init({.level = "verbose"});
    FAIL() << "must throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'verbose'"), std::string::npos);
  }
  log::init({});
}

}  // namespace
}  // namespace mowe
