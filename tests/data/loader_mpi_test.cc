// The global batch does not depend on the world size: run at 1, 2 and 4 ranks, each rank
// compares its slice with a single-rank reference built in the same process, then the ranks
// check together that their slices tile the global batch.
#include <gtest/gtest.h>
#include <mpi.h>

#include "data/rng.h"
#include "data/loader.h"

namespace mowe::data {
namespace {

constexpr int32_t kVocab = 300;
constexpr int64_t kGlobalBatch = 8;

struct Fixture {
  std::shared_ptr<const TokenStream> stream;
  std::shared_ptr<const RoutingTokenizer> table;
};

Fixture make_fixture() {
  Rng rng(17);
  std::vector<int32_t> tokens(30000);
  for (int32_t& t : tokens) t = 20 + static_cast<int32_t>(rng.below(kVocab - 20));
  auto table = std::make_shared<RoutingTokenizer>(kVocab);
  for (int k = 0; k < 400; ++k) {
    std::vector<int32_t> key(2 + rng.below(4));
    for (int32_t& t : key) t = 20 + static_cast<int32_t>(rng.below(8));
    table->insert(key, kVocab + k);
  }
  return {std::make_shared<const TokenStream>(std::move(tokens), 17), table};
}

LoaderOptions options(int rank, int world) {
  LoaderOptions o;
  o.input_length = 48;
  o.seed = 99;
  o.global_batch_size = kGlobalBatch;
  o.rank = rank;
  o.world_size = world;
  for (int k = 0; k < 20; ++k) o.sentinels.push_back(3 + k);
  return o;
}

// Rows [first, first + rows) of a [B, width] array.
std::vector<int32_t> rows(const std::vector<int32_t>& a, int64_t first, int64_t rows, int width) {
  return {a.begin() + first * width, a.begin() + (first + rows) * width};
}

TEST(LoaderMpi, EveryRankSeesItsSliceOfTheSameGlobalBatch) {
  int rank = 0, world = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  Fixture f = make_fixture();
  Loader mine(f.stream, f.table, options(rank, world));
  Loader reference(f.stream, f.table, options(0, 1));
  const int64_t local = kGlobalBatch / world;
  uint64_t checksum = 0;
  for (int s = 0; s < 6; ++s) {
    Batch b = mine.next();
    Batch g = reference.next();
    ASSERT_EQ(b.batch_size, local);
    ASSERT_EQ(b.first_example, g.first_example + rank * local);
    const int T = b.input_length, D = b.target_length;
    EXPECT_EQ(b.encoder_input_ids, rows(g.encoder_input_ids, rank * local, local, T));
    EXPECT_EQ(b.encoder_routing_ids, rows(g.encoder_routing_ids, rank * local, local, T));
    EXPECT_EQ(b.decoder_input_ids, rows(g.decoder_input_ids, rank * local, local, D));
    EXPECT_EQ(b.decoder_routing_ids, rows(g.decoder_routing_ids, rank * local, local, D));
    EXPECT_EQ(b.targets, rows(g.targets, rank * local, local, D));
    for (int32_t t : b.encoder_input_ids) checksum += static_cast<uint32_t>(t);
  }
  // The slices of all ranks add up to the whole global batches of the reference.
  uint64_t total = 0, expected = 0;
  MPI_Allreduce(&checksum, &total, 1, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
  Loader again(f.stream, f.table, options(0, 1));
  for (int s = 0; s < 6; ++s)
    for (int32_t t : again.next().encoder_input_ids) expected += static_cast<uint32_t>(t);
  EXPECT_EQ(total, expected);
}

TEST(LoaderMpi, RestoreOnEveryRankContinuesTheSameGlobalSequence) {
  int rank = 0, world = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  Fixture f = make_fixture();
  Loader a(f.stream, f.table, options(rank, world));
  for (int s = 0; s < 3; ++s) a.next();
  LoaderState saved = a.state();
  Batch after = a.next();
  Loader b(f.stream, f.table, options(rank, world));
  b.restore(saved);
  Batch resumed = b.next();
  EXPECT_EQ(resumed.step, 3);
  EXPECT_EQ(resumed.encoder_input_ids, after.encoder_input_ids);
  EXPECT_EQ(resumed.decoder_routing_ids, after.decoder_routing_ids);
}

}  // namespace
}  // namespace mowe::data
