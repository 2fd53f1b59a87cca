// The routing tokenizer's hash table against a brute-force reference.
#include "data/routing_tokenizer.h"

#include <gtest/gtest.h>

#include <map>
#include <random>

#include "data/rng.h"
#include "runtime/check.h"

namespace mowe::data {
namespace {

using Key = std::vector<int32_t>;

// The specification: for each position, the longest suffix of at most 9 pieces in the map;
// single pieces are their own routing ids.
std::vector<int32_t> brute_force(const std::vector<int32_t>& tokens,
                                 const std::map<Key, int32_t>& keys) {
  std::vector<int32_t> out(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) {
    out[i] = tokens[i];
    for (size_t len = 2; len <= 9 && len <= i + 1; ++len) {
      Key suffix(tokens.begin() + (i + 1 - len), tokens.begin() + i + 1);
      if (auto it = keys.find(suffix); it != keys.end()) out[i] = it->second;
    }
  }
  return out;
}

TEST(RoutingTokenizer, LongestSuffixWins) {
  RoutingTokenizer t(10);
  ASSERT_TRUE(t.insert(Key{1, 2}, 100));
  ASSERT_TRUE(t.insert(Key{1, 2, 3}, 101));
  ASSERT_TRUE(t.insert(Key{2, 3}, 102));
  ASSERT_TRUE(t.insert(Key{5, 1, 2, 3, 4}, 103));
  EXPECT_FALSE(t.insert(Key{1, 2}, 999));  // first insertion wins
  EXPECT_EQ(t.find(Key{1, 2}), 100);
  EXPECT_EQ(t.find(Key{7}), 7);
  EXPECT_EQ(t.find(Key{2, 1}), -1);
  Key tokens{1, 2, 3, 4, 5, 1, 2, 3, 4, 9};
  std::vector<int32_t> ids(tokens.size());
  t.route(tokens, ids);
  EXPECT_EQ(ids, (std::vector<int32_t>{1, 100, 101, 4, 5, 1, 100, 101, 103, 9}));
}

TEST(RoutingTokenizer, UnroutedPiecesGetMinusOneAndCutTheContext) {
  RoutingTokenizer table(20);
  table.set_unrouted(std::vector<int32_t>{0, 1, 3});
  EXPECT_TRUE(table.unrouted(3));
  EXPECT_FALSE(table.unrouted(5));
  ASSERT_TRUE(table.insert(Key{5, 6}, 100));
  std::vector<int32_t> t = {5, 6, 3, 6, 1, 5, 6, 0};
  std::vector<int32_t> ids(t.size());
  table.route(t, ids);
  EXPECT_EQ(ids, (std::vector<int32_t>{5, 100, -1, 6, -1, 5, 100, -1}));
  // Keys never contain an unrouted piece, and a piece ending a key cannot become one.
  EXPECT_THROW(table.insert(Key{3, 6}, 101), Error);
  EXPECT_THROW(table.set_unrouted(std::vector<int32_t>{6}), Error);
}

TEST(RoutingTokenizer, RejectsBadKeysAndTokens) {
  RoutingTokenizer t(10);
  EXPECT_THROW(t.insert(Key{1}, 5), Error);      // pieces own length 1
  EXPECT_THROW(t.insert(Key(10, 1), 5), Error);  // longer than 9
  EXPECT_THROW(t.insert(Key{1, 10}, 5), Error);  // not a piece id
  std::vector<int32_t> ids(2);
  EXPECT_THROW(t.route(Key{1, 12}, ids), Error);
  EXPECT_THROW(t.route(Key{-1, 1}, ids), Error);
}

TEST(RoutingTokenizer, AgreesWithBruteForceOnRandomSequences) {
  // A small alphabet makes long matches common; keys of every length 2..9, many sharing
  // suffixes and prefixes, and enough of them to force several rehashes.
  for (int32_t vocab : {5, 40, 3000}) {
    Rng rng(vocab);
    RoutingTokenizer table(vocab);
    std::map<Key, int32_t> reference;
    std::vector<int32_t> corpus(20000);
    for (int32_t& t : corpus) t = static_cast<int32_t>(rng.below(vocab));
    for (int k = 0; k < 5000; ++k) {
      int len = 2 + static_cast<int>(rng.below(8));
      size_t start = rng.below(corpus.size() - len);
      Key key(corpus.begin() + start, corpus.begin() + start + len);
      if (rng.below(4) == 0)
        for (int32_t& t : key) t = static_cast<int32_t>(rng.below(vocab));  // random keys too
      int32_t id = vocab + k;
      bool fresh = reference.emplace(key, id).second;
      ASSERT_EQ(table.insert(key, id), fresh);
    }
    EXPECT_LE(table.load_factor(), 0.5);
    EXPECT_EQ(table.num_keys(), static_cast<int64_t>(reference.size()));
    for (const auto& [key, id] : reference) ASSERT_EQ(table.find(key), id);
    std::vector<int32_t> ids(corpus.size());
    table.route(corpus, ids);
    EXPECT_EQ(ids, brute_force(corpus, reference)) << "vocab " << vocab;
    // Sequences shorter than 9 tokens: the left context is cut at the start.
    for (int n = 1; n < 10; ++n) {
      std::vector<int32_t> part(corpus.begin() + 100, corpus.begin() + 100 + n), out(n);
      table.route(part, out);
      EXPECT_EQ(out, brute_force(part, reference));
    }
  }
}

}  // namespace
}  // namespace mowe::data
