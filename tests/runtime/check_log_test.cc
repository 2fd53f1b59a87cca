#include <gtest/gtest.h>

#include <string>

#include "runtime/check.h"
#include "runtime/log.h"
#include "tests/util/expect_error.h"

namespace mowe {
namespace {

using testing::expect_error;

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
  expect_error([] { MOWE_CHECK_GEN("FakeLib", fake_status(7), is_zero, describe); },
               {"FakeLib failed on rank 3", "fake_status(7)", "status 7", "check_log_test.cc:"});
  log::init({});
}

TEST(Check, PassingCheckEvaluatesOnce) {
  int calls = 0;
  auto call = [&] { return ++calls, 0; };
  MOWE_CHECK_GEN("FakeLib", call(), is_zero, describe);
  EXPECT_EQ(calls, 1);
}

TEST(Check, InvariantMessageIsFormatted) {
  expect_error([] { MOWE_CHECK(1 + 1 == 3, "arithmetic says {}", 2); },
               {"1 + 1 == 3: arithmetic says 2"});
}

TEST(Log, RejectsUnknownLevel) {
  expect_error([] { log::init({.level = "verbose"}); }, {"'verbose'"});
  log::init({});
}

}  // namespace
}  // namespace mowe
