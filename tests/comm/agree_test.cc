// comm/agree.h at every world size: agreed errors (none, one rank, several ranks, every rank),
// the lowest rank's text, strings of any length, and fingerprints that must be the same
// everywhere. Every rank must end each case with the same answer.
#include "comm/agree.h"

#include <gtest/gtest.h>
#include <mpi.h>

#include <string>

#include "comm/mpi_communicator.h"
#include "runtime/log.h"
#include "tests/comm/comm_test_util.h"

namespace mowe {
namespace {

using test::world_rank;
using test::world_size;

// The AgreedError's text of fn, or "no error".
std::string agreed_error(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const comm::AgreedError& e) {
    return e.what();
  }
  return "no error";
}

TEST(RunAgreed, ReturnsWhenNoRankThrows) {
  comm::MpiCommunicator comm(MPI_COMM_WORLD);
  int calls = 0;
  EXPECT_EQ(agreed_error([&] { comm::run_agreed(comm, [&] { ++calls; }); }), "no error");
  EXPECT_EQ(calls, 1);
}

TEST(RunAgreed, EveryRankGetsTheLastRanksErrorWithItsRankAndHost) {
  comm::MpiCommunicator comm(MPI_COMM_WORLD);
  const int last = world_size() - 1;
  const std::string expected =
      last == 0 ? "disk gone"
                : fmt::format("rank {} on host {}: disk gone", last, log::host_name());
  EXPECT_EQ(agreed_error([&] {
              comm::run_agreed(comm, [&] {
                if (world_rank() == last) throw Error("disk gone");
              });
            }),
            expected);
}

TEST(RunAgreed, RankZerosErrorReadsAsItIsWhenEveryRankFails) {
  comm::MpiCommunicator comm(MPI_COMM_WORLD);
  EXPECT_EQ(agreed_error([&] {
              comm::run_agreed(comm,
                               [&] { throw Error(fmt::format("bad config {}", world_rank())); });
            }),
            "bad config 0");
}

TEST(RunAgreed, TheLowestFailingRankSpeaks) {
  comm::MpiCommunicator comm(MPI_COMM_WORLD);
  // Every rank but rank 0 fails, each with its own text: rank 1's is the one agreed on.
  const std::string expected =
      world_size() == 1 ? "no error"
                        : fmt::format("rank 1 on host {}: missing on 1", log::host_name());
  EXPECT_EQ(agreed_error([&] {
              comm::run_agreed(comm, [&] {
                if (world_rank() > 0) throw Error(fmt::format("missing on {}", world_rank()));
              });
            }),
            expected);
}

TEST(LowestRankText, TheLowestNonEmptyTextOrNothing) {
  comm::MpiCommunicator comm(MPI_COMM_WORLD);
  const int from = world_size() / 2;  // 0, 1, 2 at 1, 2, 4 ranks
  const std::string mine = world_rank() >= from ? fmt::format("text of {}", world_rank()) : "";
  EXPECT_EQ(comm::lowest_rank_text(comm, mine), fmt::format("text of {}", from));
  EXPECT_EQ(comm::lowest_rank_text(comm, ""), "");
}

TEST(BroadcastString, AnyLengthAndBytesFromAnyRoot) {
  comm::MpiCommunicator comm(MPI_COMM_WORLD);
  const int root = world_size() - 1;
  for (const std::string& text :
       {std::string(), std::string("a"), std::string("ab\0cd", 5), std::string(1001, 'x')}) {
    const std::string mine = world_rank() == root ? text : "something else";
    EXPECT_EQ(comm::broadcast_string(comm, root, mine), text);
  }
}

TEST(CheckSameEverywhere, PassesWhenEveryRankAgrees) {
  comm::MpiCommunicator comm(MPI_COMM_WORLD);
  EXPECT_EQ(agreed_error([&] {
              comm::check_same_everywhere(comm, 0x0123456789abcdefULL, "things differ", "fix it");
            }),
            "no error");
}

TEST(CheckSameEverywhere, NamesTheLowestRankThatDiffers) {
  comm::MpiCommunicator comm(MPI_COMM_WORLD);
  // Ranks from the middle on hold another fingerprint (at 4 ranks, ranks 2 and 3).
  const int from = world_size() / 2;
  const uint64_t mine = world_rank() >= from && world_size() > 1 ? 0xfedcba9876543210ULL : 7;
  const std::string expected =
      world_size() == 1 ? "no error"
                        : fmt::format(
                              "things differ: rank {} on host {} differs from rank 0 (fingerprint "
                              "fedcba9876543210, rank 0's 0000000000000007): fix it",
                              from, log::host_name());
  EXPECT_EQ(
      agreed_error([&] { comm::check_same_everywhere(comm, mine, "things differ", "fix it"); }),
      expected);
}

}  // namespace
}  // namespace mowe
