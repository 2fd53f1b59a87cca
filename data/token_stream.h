// Tokenized corpora and the token stream the loader cuts examples from.
//
// The whole split is tokenized once, up front (as llm.c and Megatron pre-tokenize), so that the
// global example g is a pure function of (seed, g): documents in a seeded order, each followed by
// EOS, concatenated and cut into chunks of the pre-corruption length (no padding, the remainder
// dropped); epoch e visits the chunks in a seeded permutation of its own. Any rank can build any
// example without reading the others', which makes the global batch independent of world size.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "data/tokenizer.h"

namespace mowe::data {

// Document d is tokens[offsets[d] .. offsets[d + 1]).
struct TokenizedCorpus {
  std::vector<int32_t> tokens;
  std::vector<int64_t> offsets{0};

  int64_t num_documents() const { return static_cast<int64_t>(offsets.size()) - 1; }
  std::span<const int32_t> document(int64_t d) const {
    return {tokens.data() + offsets[d], static_cast<size_t>(offsets[d + 1] - offsets[d])};
  }
};

// Encodes every document, on `threads` threads (0 = every core). `progress(done, total)` is
// called now and then from the calling thread.
TokenizedCorpus tokenize_documents(const std::vector<std::string>& documents,
                                   const Tokenizer& tokenizer, int threads = 0,
                                   const std::function<void(int64_t, int64_t)>& progress = nullptr);

// A bijection of [0, n) keyed by `key` (a 4-round Feistel network with cycle walking): the
// epoch order of the chunks, computed per index without storing a permutation.
uint64_t permute_index(uint64_t index, uint64_t n, uint64_t key);

class TokenStream {
 public:
  // Documents of `corpus` in an order shuffled with `seed`, each followed by eos_id.
  TokenStream(const TokenizedCorpus& corpus, int32_t eos_id, uint64_t seed);
  // A stream given as is (tests, benchmarks).
  TokenStream(std::vector<int32_t> tokens, uint64_t seed);

  int64_t size() const { return static_cast<int64_t>(tokens_.size()); }
  const std::vector<int32_t>& tokens() const { return tokens_; }
  uint64_t seed() const { return seed_; }
  // Fingerprint of the tokens and the seed, recorded in saved loader states.
  uint64_t hash() const { return hash_; }

  int64_t num_chunks(int64_t chunk_length) const { return size() / chunk_length; }
  // The chunk global example `example` reads: epoch = example / num_chunks, and inside the
  // epoch a seeded permutation of the chunks.
  std::span<const int32_t> example(int64_t example, int64_t chunk_length) const;

 private:
  std::vector<int32_t> tokens_;
  uint64_t seed_;
  uint64_t hash_;
};

}  // namespace mowe::data
