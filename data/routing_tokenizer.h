// The routing tokenizer (paper, section 2.4): the routing id of position i is the id of the
// longest sequence t[i-k..i], k = 0..8, found in a table keyed by default-token-id sequences.
// Routing ids [0, V) are the default pieces themselves, so a length-1 key never needs a lookup
// and every token has a routing id; longer keys (the auxiliary words, 2..9 pieces) live in an
// open-addressing hash table of 64-bit sequence hashes, verified against the stored key.
//
// Lookups are filtered by the lengths of the keys that end in t[i] (a 9-bit mask per piece) and
// tried longest first, so most positions cost no probe at all. Only left context is used: the
// same function serves encoder inputs and decoder inputs.
//
// Pieces marked unrouted (pad, EOS, the sentinels: not words) get routing id -1 wherever they
// occur, as padding: no expert sees them. No key contains one, so they also cut the context.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace mowe::data {

class RoutingTokenizer {
 public:
  static constexpr int kMaxKeyLength = 9;
  static constexpr int32_t kNotRouted = -1;  // the routing id of unrouted pieces and of padding

  // Routing ids [0, default_vocab_size) are the default pieces.
  explicit RoutingTokenizer(int32_t default_vocab_size = 0);

  // Maps `key` (2..9 piece ids, each < default_vocab_size) to `routing_id`. Returns false and
  // changes nothing when the key is already present: the first insertion wins.
  bool insert(std::span<const int32_t> key, int32_t routing_id);

  // The routing id of exactly this key (length 1 = the piece itself), or -1.
  int32_t find(std::span<const int32_t> key) const;

  // Marks `pieces` unrouted: route() gives them kNotRouted. Keys must not contain them.
  void set_unrouted(std::span<const int32_t> pieces);
  bool unrouted(int32_t piece) const { return end_masks_[piece] & kUnroutedBit; }

  // routing_ids[i] = id of the longest suffix of tokens[0..i] of at most 9 pieces in the table,
  // or kNotRouted for an unrouted piece. Throws when a token is not a default piece id.
  void route(const int32_t* tokens, int64_t n, int32_t* routing_ids) const;
  void route(std::span<const int32_t> tokens, std::span<int32_t> routing_ids) const {
    route(tokens.data(), static_cast<int64_t>(tokens.size()), routing_ids.data());
  }

  int32_t default_vocab_size() const { return default_vocab_size_; }
  int64_t num_keys() const { return num_keys_; }  // keys of 2..9 pieces
  int64_t capacity() const { return static_cast<int64_t>(slots_.size()); }
  double load_factor() const { return capacity() ? double(num_keys_) / capacity() : 0.0; }
  int64_t bytes() const;  // memory held by the table

 private:
  struct Slot {
    uint64_t hash;
    int32_t routing_id;  // -1: empty
    uint32_t key;        // offset into keys_ << 4 | length
  };

  static uint64_t step(uint64_t h, int32_t token);
  static uint64_t finish(uint64_t h);
  int32_t probe(uint64_t hash, const int32_t* key_end, int length) const;
  void grow();
  void place(const Slot& slot);

  int32_t default_vocab_size_;
  int64_t num_keys_ = 0;
  int shift_ = 64;
  std::vector<Slot> slots_;
  std::vector<int32_t> keys_;  // every key's pieces, back to back
  // Per piece: bit L set when a key of length L ends with it; bit 0 (no key has length 0) marks
  // an unrouted piece, so route() reads one word per position for both.
  static constexpr uint16_t kUnroutedBit = 1;
  std::vector<uint16_t> end_masks_;
};

}  // namespace mowe::data
