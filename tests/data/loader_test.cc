// The loader on a synthetic token stream: batch layout, prefetching, save and restore.
#include "data/loader.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <any>
#include <set>

#include "data/rng.h"
#include "runtime/check.h"
#include "tests/util/expect_error.h"

namespace mowe::data {
namespace {

using mowe::testing::expect_error;

constexpr int32_t kVocab = 200;

std::shared_ptr<const TokenStream> synthetic_stream(int64_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<int32_t> tokens(n);
  for (int32_t& t : tokens) t = 20 + static_cast<int32_t>(rng.below(kVocab - 20));
  return std::make_shared<const TokenStream>(std::move(tokens), seed);
}

std::shared_ptr<const RoutingTokenizer> synthetic_table() {
  auto table = std::make_shared<RoutingTokenizer>(kVocab);
  Rng rng(3);
  for (int k = 0; k < 500; ++k) {
    std::vector<int32_t> key(2 + rng.below(3));
    for (int32_t& t : key) t = 20 + static_cast<int32_t>(rng.below(10));  // short alphabet
    table->insert(key, kVocab + k);
  }
  return table;
}

LoaderOptions options(int64_t batch, int rank = 0, int world = 1) {
  LoaderOptions o;
  o.input_length = 64;
  o.seed = 5;
  o.global_batch_size = batch;
  o.rank = rank;
  o.world_size = world;
  for (int k = 0; k < 16; ++k) o.sentinels.push_back(3 + k);
  return o;
}

void expect_same(const Batch& a, const Batch& b) {
  EXPECT_EQ(a.step, b.step);
  EXPECT_EQ(a.first_example, b.first_example);
  EXPECT_EQ(a.encoder_input_ids, b.encoder_input_ids);
  EXPECT_EQ(a.encoder_routing_ids, b.encoder_routing_ids);
  EXPECT_EQ(a.decoder_input_ids, b.decoder_input_ids);
  EXPECT_EQ(a.decoder_routing_ids, b.decoder_routing_ids);
  EXPECT_EQ(a.targets, b.targets);
  EXPECT_EQ(a.loss_weights, b.loss_weights);
}

TEST(Loader, BatchLayoutFollowsT5) {
  Loader loader(synthetic_stream(5000, 1), synthetic_table(), options(4));
  Batch b = loader.next();
  const int T = b.input_length, D = b.target_length;
  EXPECT_EQ(T, 64);
  EXPECT_EQ(D, loader.lengths().targets_length);
  for (int r = 0; r < b.batch_size; ++r) {
    EXPECT_EQ(b.decoder_input_ids[r * D], 0);  // starts with pad
    for (int i = 1; i < D; ++i) EXPECT_EQ(b.decoder_input_ids[r * D + i], b.targets[r * D + i - 1]);
    EXPECT_EQ(b.targets[r * D + D - 1], 1);  // EOS
    EXPECT_EQ(b.encoder_input_ids[r * T + T - 1], 1);
    EXPECT_EQ(b.targets[r * D], 3);  // <extra_id_0>
    std::vector<int32_t> routing(T);
    auto table = synthetic_table();
    table->route(&b.encoder_input_ids[r * T], T, routing.data());
    EXPECT_EQ(routing, std::vector<int32_t>(b.encoder_routing_ids.begin() + r * T,
                                            b.encoder_routing_ids.begin() + (r + 1) * T));
  }
  for (int32_t m : b.encoder_mask) EXPECT_EQ(m, 1);
  for (float w : b.loss_weights) EXPECT_EQ(w, 1.0f);
}

TEST(Loader, PadEosAndSentinelsCarryRoutingIdMinusOne) {
  // The table a routing vocabulary makes: pad, EOS and the sentinels unrouted.
  auto table = std::make_shared<RoutingTokenizer>(*synthetic_table());
  std::vector<int32_t> specials = {0, 1};
  for (int k = 0; k < 16; ++k) specials.push_back(3 + k);
  table->set_unrouted(specials);
  Loader loader(synthetic_stream(5000, 1), table, options(4));
  const Batch& b = loader.next();
  auto is_special = [&](int32_t t) {
    return std::find(specials.begin(), specials.end(), t) != specials.end();
  };
  int64_t special_positions = 0;
  for (auto [ids, routing] : {std::pair{&b.encoder_input_ids, &b.encoder_routing_ids},
                              std::pair{&b.decoder_input_ids, &b.decoder_routing_ids}}) {
    for (size_t i = 0; i < ids->size(); ++i) {
      if (is_special((*ids)[i])) {
        EXPECT_EQ((*routing)[i], -1) << i;
        ++special_positions;
      } else {
        EXPECT_GE((*routing)[i], 0) << i;
      }
    }
  }
  // Each row: the encoder's sentinels and EOS, the decoder's start, sentinels (and no EOS: the
  // decoder inputs stop before the targets' EOS).
  EXPECT_GT(special_positions, 4 * 3);
  for (int r = 0; r < b.batch_size; ++r) EXPECT_EQ(b.decoder_routing_ids[r * b.target_length], -1);
  // The load count skips them.
  int64_t counted = 0;
  for (int64_t c : count_routing_ids(loader, 4, kVocab + 500)) counted += c;
  EXPECT_EQ(counted, static_cast<int64_t>(b.encoder_input_ids.size() + b.decoder_input_ids.size()) -
                         special_positions);
}

TEST(Loader, PadsAConfiguredTargetLengthAndMasksIt) {
  LoaderOptions o = options(2);
  const int64_t derived = t5_span_lengths(64, 0.15, 3.0).targets_length;
  o.target_length = derived + 5;
  Loader loader(synthetic_stream(5000, 1), synthetic_table(), o);
  Batch b = loader.next();
  const int D = b.target_length;
  ASSERT_EQ(D, derived + 5);
  for (int i = 0; i < D; ++i) {
    const bool real = i < derived;
    EXPECT_EQ(b.decoder_mask[i], real ? 1 : 0);
    EXPECT_EQ(b.loss_weights[i], real ? 1.0f : 0.0f);
    if (!real) {
      EXPECT_EQ(b.decoder_routing_ids[i], -1);
      EXPECT_EQ(b.targets[i], 0);
    }
  }
  o.target_length = derived - 1;
  EXPECT_THROW(Loader(synthetic_stream(5000, 1), synthetic_table(), o), Error);
}

// The loader's length arithmetic holds down to the smallest input length the config allows and
// over the densities users set: every example fits (the loader checks each one it makes).
TEST(Loader, EveryInputLengthFromTheMinimumFits) {
  for (double density : {0.15, 0.3, 0.5}) {
    for (int length : {4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 16, 17, 31, 64, 100, 512}) {
      LoaderOptions o = options(2);
      o.input_length = length;
      o.noise_density = density;
      o.sentinels.clear();  // enough for the most spans here (512 at 0.5: 128)
      for (int k = 0; k < 150; ++k) o.sentinels.push_back(3 + k);
      Loader loader(synthetic_stream(5000, 1), synthetic_table(), o);
      for (int i = 0; i < 20; ++i) {
        const Example ex = loader.example(i);
        EXPECT_LE(static_cast<int>(ex.inputs.size()), length) << length << " at " << density;
        EXPECT_GE(ex.targets.size(), 3u) << "a sentinel, a noise token and EOS";
      }
    }
  }
}

TEST(Loader, RefusesBatchSizesThatDoNotSplitEvenly) {
  expect_error(
      [] { Loader loader(synthetic_stream(5000, 1), synthetic_table(), options(6, 0, 4)); },
      {"global_batch_size"});
  EXPECT_THROW(Loader(synthetic_stream(50, 1), synthetic_table(), options(2)), Error);
}

TEST(Loader, PrefetchedBatchesEqualDirectOnes) {
  LoaderOptions o = options(4);
  o.prefetch_batches = 3;
  Loader loader(synthetic_stream(5000, 1), synthetic_table(), o);
  for (int s = 0; s < 10; ++s) expect_same(loader.next(), loader.batch_at(s, 4 * s));
}

// What the prepare hook attaches comes back with its batch, under its own type only, and a
// recycled batch hands the hook its earlier value to refill (no new one per batch).
TEST(Loader, PrepareAttachesATypedValueReusedWithItsBatch) {
  struct Sum {
    int64_t step = -1, ids = 0;
    int fills = 0;
  };
  LoaderOptions o = options(4);
  o.prefetch_batches = 2;
  o.prepare = [](Batch& b) {
    Sum* sum = std::any_cast<Sum>(&b.prepared);
    if (sum == nullptr) sum = &b.prepared.emplace<Sum>();
    sum->step = b.step;
    sum->ids = 0;
    for (int32_t id : b.encoder_input_ids) sum->ids += id;
    ++sum->fills;
  };
  Loader loader(synthetic_stream(5000, 1), synthetic_table(), o);
  std::set<const Sum*> storage;
  int most_fills = 0;
  for (int s = 0; s < 9; ++s) {
    const Batch& b = loader.next();
    const Sum* sum = std::any_cast<Sum>(&b.prepared);
    ASSERT_NE(sum, nullptr) << "step " << s;
    EXPECT_EQ(std::any_cast<int>(&b.prepared), nullptr);
    EXPECT_EQ(sum->step, s);
    int64_t ids = 0;
    for (int32_t id : b.encoder_input_ids) ids += id;
    EXPECT_EQ(sum->ids, ids);
    storage.insert(sum);
    most_fills = std::max(most_fills, sum->fills);
  }
  // A ring of prefetch_batches + 1 batches: 3 values for 9 batches, each refilled 3 times.
  EXPECT_EQ(storage.size(), 3u);
  EXPECT_EQ(most_fills, 3);
  // Built on the caller's thread, the hook runs too; without a hook nothing is attached.
  const Batch direct = loader.batch_at(2, 8);
  ASSERT_NE(std::any_cast<Sum>(&direct.prepared), nullptr);
  EXPECT_EQ(std::any_cast<Sum>(&direct.prepared)->step, 2);
  Loader plain(synthetic_stream(5000, 1), synthetic_table(), options(4));
  EXPECT_FALSE(plain.next().prepared.has_value());
}

// Writing an example into a row: its values, then padding (id pad, routing id -1, mask 0, loss
// weight 0), the other rows untouched; a reshaped batch keeps its storage.
TEST(BatchRows, PutExamplePadsTheRestOfItsRow) {
  Batch b;
  shape_batch(2, 5, 4, &b);
  ASSERT_EQ(b.encoder_input_ids.size(), 10u);
  ASSERT_EQ(b.loss_weights.size(), 8u);
  std::fill(b.encoder_input_ids.begin(), b.encoder_input_ids.end(), 77);
  Example ex;
  ex.inputs = {21, 22, 1};
  ex.decoder_inputs = {0, 30};
  ex.targets = {30, 1};
  route_example(*synthetic_table(), &ex);
  ASSERT_EQ(ex.input_routing.size(), 3u);
  ASSERT_EQ(ex.decoder_routing.size(), 2u);
  ex.input_routing = {40, 41, -1};  // values of its own, to see where they land
  ex.decoder_routing = {-1, 42};
  put_example(ex, 1, 0, &b);
  EXPECT_EQ(b.encoder_input_ids, (std::vector<int32_t>{77, 77, 77, 77, 77, 21, 22, 1, 0, 0}));
  EXPECT_EQ(std::vector<int32_t>(b.encoder_routing_ids.begin() + 5, b.encoder_routing_ids.end()),
            (std::vector<int32_t>{40, 41, -1, -1, -1}));
  EXPECT_EQ(std::vector<int32_t>(b.encoder_mask.begin() + 5, b.encoder_mask.end()),
            (std::vector<int32_t>{1, 1, 1, 0, 0}));
  EXPECT_EQ(std::vector<int32_t>(b.decoder_input_ids.begin() + 4, b.decoder_input_ids.end()),
            (std::vector<int32_t>{0, 30, 0, 0}));
  EXPECT_EQ(std::vector<int32_t>(b.decoder_routing_ids.begin() + 4, b.decoder_routing_ids.end()),
            (std::vector<int32_t>{-1, 42, -1, -1}));
  EXPECT_EQ(std::vector<int32_t>(b.decoder_mask.begin() + 4, b.decoder_mask.end()),
            (std::vector<int32_t>{1, 1, 0, 0}));
  EXPECT_EQ(std::vector<int32_t>(b.targets.begin() + 4, b.targets.end()),
            (std::vector<int32_t>{30, 1, 0, 0}));
  EXPECT_EQ(std::vector<float>(b.loss_weights.begin() + 4, b.loss_weights.end()),
            (std::vector<float>{1, 1, 0, 0}));
  // Routed by the table, as the loader routes its examples.
  std::vector<int32_t> routing(3);
  synthetic_table()->route(ex.inputs, routing);
  route_example(*synthetic_table(), &ex);
  EXPECT_EQ(ex.input_routing, routing);
  // An example longer than its row is a bug, not a cut.
  ex.inputs.assign(6, 21);
  expect_error([&] { put_example(ex, 0, 0, &b); }, {"does not fit lengths 5 and 4"});
  const int32_t* storage = b.encoder_input_ids.data();
  shape_batch(1, 5, 4, &b);
  EXPECT_EQ(b.encoder_input_ids.data(), storage);
}

TEST(Loader, EpochsVisitEveryChunkOnceInNewOrders) {
  auto stream = synthetic_stream(3000, 2);
  const int64_t len = t5_span_lengths(64, 0.15, 3.0).tokens_length;
  const int64_t chunks = stream->num_chunks(len);
  std::set<const int32_t*> first, second;
  std::vector<const int32_t*> order1, order2;
  for (int64_t g = 0; g < chunks; ++g) {
    order1.push_back(stream->example(g, len).data());
    order2.push_back(stream->example(g + chunks, len).data());
  }
  first.insert(order1.begin(), order1.end());
  second.insert(order2.begin(), order2.end());
  EXPECT_EQ(static_cast<int64_t>(first.size()), chunks);
  EXPECT_EQ(first, second);
  EXPECT_NE(order1, order2);
  for (uint64_t n : {1u, 2u, 7u, 100u, 1000u}) {
    std::set<uint64_t> seen;
    for (uint64_t i = 0; i < n; ++i) seen.insert(permute_index(i, n, 9));
    EXPECT_EQ(seen.size(), n);
    EXPECT_LT(*seen.rbegin(), n);
  }
}

TEST(Loader, SaveAndRestoreContinueIdentically) {
  auto stream = synthetic_stream(20000, 4);
  auto table = synthetic_table();
  Loader a(stream, table, options(8));
  for (int s = 0; s < 5; ++s) a.next();
  LoaderState saved = a.state();
  EXPECT_EQ(saved.step(), 5);
  EXPECT_EQ(saved.next_example(), 40);
  std::vector<Batch> expected;
  for (int s = 0; s < 4; ++s) expected.push_back(a.next());
  // A fresh loader (after a serialization round trip) and the same loader rewound.
  LoaderState parsed;
  ASSERT_TRUE(parsed.ParseFromString(saved.SerializeAsString()));
  Loader b(stream, table, options(8));
  b.restore(parsed);
  a.restore(parsed);
  for (int s = 0; s < 4; ++s) {
    expect_same(b.next(), expected[s]);
    expect_same(a.next(), expected[s]);
  }
  // Another stream or seed is refused.
  Loader c(synthetic_stream(20000, 5), table, options(8));
  EXPECT_THROW(c.restore(parsed), Error);
}

// Question-answer pairs of random lengths (some longer than the loader's lengths), without EOS.
std::shared_ptr<const QaExamples> synthetic_pairs(int n, uint64_t seed) {
  Rng rng(seed);
  std::vector<std::vector<int32_t>> inputs(n), targets(n);
  for (int i = 0; i < n; ++i) {
    inputs[i].resize(1 + rng.below(14));
    targets[i].resize(1 + rng.below(6));
    for (auto* ids : {&inputs[i], &targets[i]})
      for (int32_t& t : *ids) t = 20 + static_cast<int32_t>(rng.below(kVocab - 20));
  }
  return std::make_shared<const QaExamples>(std::move(inputs), std::move(targets), seed);
}

LoaderOptions qa_options(int64_t batch, int rank = 0, int world = 1) {
  LoaderOptions o = options(batch, rank, world);
  o.input_length = 10;
  o.target_length = 4;
  return o;
}

// Each row is its pair plus EOS, cut keeping the EOS, padded; decoder inputs are the targets
// shifted right.
TEST(QaLoader, RowsArePairsWithEosCutAndPadded) {
  auto pairs = synthetic_pairs(50, 2);
  auto table = synthetic_table();
  Loader loader(pairs, table, qa_options(6));
  const Batch b = loader.next();
  ASSERT_EQ(b.input_length, 10);
  ASSERT_EQ(b.target_length, 4);
  int cut = 0;
  for (int r = 0; r < b.batch_size; ++r) {
    const int64_t i = pairs->pair_of(b.first_example + r);
    std::vector<int32_t> in = pairs->inputs(i), out = pairs->targets(i);
    cut += in.size() >= 10 || out.size() >= 4;
    in.resize(std::min<size_t>(in.size(), 9));
    out.resize(std::min<size_t>(out.size(), 3));
    in.push_back(1), out.push_back(1);
    std::vector<int32_t> decoder = {0};
    decoder.insert(decoder.end(), out.begin(), out.end() - 1);
    in.resize(10, 0), out.resize(4, 0), decoder.resize(4, 0);
    EXPECT_EQ(std::vector<int32_t>(b.encoder_input_ids.begin() + r * 10,
                                   b.encoder_input_ids.begin() + r * 10 + 10),
              in);
    EXPECT_EQ(std::vector<int32_t>(b.targets.begin() + r * 4, b.targets.begin() + r * 4 + 4), out);
    EXPECT_EQ(std::vector<int32_t>(b.decoder_input_ids.begin() + r * 4,
                                   b.decoder_input_ids.begin() + r * 4 + 4),
              decoder);
    for (int k = 0; k < 4; ++k)
      EXPECT_EQ(b.loss_weights[r * 4 + k], out[k] != 0 ? 1.0f : 0.0f) << "row " << r;
  }
  EXPECT_GT(cut, 0) << "no example exercised the cut";
  // target_length has nothing to derive it from.
  LoaderOptions derived = qa_options(6);
  derived.target_length = 0;
  EXPECT_THROW(Loader(pairs, table, derived), Error);
}

TEST(QaLoader, RanksSliceTheSameGlobalBatchAndRestoreContinues) {
  auto pairs = synthetic_pairs(23, 3);  // several epochs in a few steps
  auto table = synthetic_table();
  Loader one(pairs, table, qa_options(8));
  std::vector<Batch> global;
  for (int s = 0; s < 7; ++s) global.push_back(one.next());
  for (int world : {2, 4}) {
    for (int rank = 0; rank < world; ++rank) {
      Loader part(pairs, table, qa_options(8, rank, world));
      for (int s = 0; s < 7; ++s) {
        const Batch b = part.next();
        const int64_t rows = 8 / world, offset = rank * rows;
        EXPECT_EQ(b.first_example, global[s].first_example + offset);
        EXPECT_EQ(b.encoder_input_ids,
                  std::vector<int32_t>(global[s].encoder_input_ids.begin() + offset * 10,
                                       global[s].encoder_input_ids.begin() + (offset + rows) * 10));
        EXPECT_EQ(b.targets, std::vector<int32_t>(global[s].targets.begin() + offset * 4,
                                                  global[s].targets.begin() + (offset + rows) * 4));
      }
    }
  }
  Loader a(pairs, table, qa_options(8));
  for (int s = 0; s < 3; ++s) a.next();
  LoaderState parsed;
  ASSERT_TRUE(parsed.ParseFromString(a.state().SerializeAsString()));
  Loader b(pairs, table, qa_options(8));
  b.restore(parsed);
  for (int s = 3; s < 7; ++s) expect_same(b.next(), global[s]);
  // A state of the span-corruption loader, or of other pairs, is refused.
  Loader span(synthetic_stream(20000, 3), table, options(8));
  EXPECT_THROW(b.restore(span.state()), Error);
  Loader other(synthetic_pairs(23, 4), table, qa_options(8));
  EXPECT_THROW(other.restore(parsed), Error);
}

}  // namespace
}  // namespace mowe::data
