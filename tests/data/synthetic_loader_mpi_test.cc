// The SYNTHETIC corpus gives the same global batches at 1, 2 and 4 ranks: each rank's slice equals
// the rows of a single-rank reference built in the same process, and the slices of all ranks add
// up to the reference's whole batches (routing ids included: they decide the expert loads).
#include <gtest/gtest.h>
#include <mpi.h>

#include "data/pipeline.h"
#include "data/synthetic.h"
#include "launch/train/config_rules.h"
#include "runtime/config/config.h"

namespace mowe::data {
namespace {

constexpr char kConfig[] = R"(
model {
  d_model: 16 num_heads: 2 d_kv: 8 d_ff: 32 num_encoder_layers: 2 num_decoder_layers: 2
  vocab_size: 64
  relative_attention_num_buckets: 8 relative_attention_max_distance: 16
  mowe {
    encoder_layers: [1] decoder_layers: [1] num_unrouted_ids: 4 routing_vocab_size: 100000
    buckets { num_routing_ids: 0 num_blocks: 4 experts_per_block: 8 expert_d_ff: 8 }
  }
}
data { corpus: SYNTHETIC sp_vocab_size: 64 num_sentinels: 8 input_length: 48 seed: 3 }
training { global_batch_size: 8 }
)";

std::unique_ptr<Loader> make(const config::Config& c, int rank, int world) {
  auto examples = std::make_shared<const SyntheticExamples>(c, SyntheticExamples::Split::kTrain);
  auto table = std::make_shared<const RoutingTokenizer>(c.data().sp_vocab_size());
  return std::make_unique<Loader>(examples, table,
                                  loader_options(c, synthetic_tokenizer(c.data()), rank, world));
}

std::vector<int32_t> rows(const std::vector<int32_t>& a, int64_t first, int64_t n, int width) {
  return {a.begin() + first * width, a.begin() + (first + n) * width};
}

uint64_t checksum(const Batch& b) {
  uint64_t sum = 0;
  for (const auto* v :
       {&b.encoder_input_ids, &b.encoder_routing_ids, &b.decoder_routing_ids, &b.targets})
    for (int32_t t : *v) sum += static_cast<uint32_t>(t) * 2654435761u;
  return sum;
}

TEST(SyntheticLoaderMpi, EveryRankSeesItsSliceOfTheSameGlobalBatch) {
  int rank = 0, world = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  const config::Config c = train::load_config_text(kConfig, "synthetic_loader_mpi_test");
  auto mine = make(c, rank, world);
  auto reference = make(c, 0, 1);
  const int64_t local = 8 / world;
  uint64_t sum = 0, expected = 0;
  for (int s = 0; s < 5; ++s) {
    const Batch b = mine->next();
    const Batch g = reference->next();
    ASSERT_EQ(b.batch_size, local);
    const int T = b.input_length, D = b.target_length;
    EXPECT_EQ(b.encoder_input_ids, rows(g.encoder_input_ids, rank * local, local, T));
    EXPECT_EQ(b.encoder_routing_ids, rows(g.encoder_routing_ids, rank * local, local, T));
    EXPECT_EQ(b.decoder_input_ids, rows(g.decoder_input_ids, rank * local, local, D));
    EXPECT_EQ(b.decoder_routing_ids, rows(g.decoder_routing_ids, rank * local, local, D));
    EXPECT_EQ(b.targets, rows(g.targets, rank * local, local, D));
    sum += checksum(b);
    expected += checksum(g);
  }
  uint64_t total = 0;
  MPI_Allreduce(&sum, &total, 1, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
  EXPECT_EQ(total, expected);
}

}  // namespace
}  // namespace mowe::data
