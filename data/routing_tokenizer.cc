#include "data/routing_tokenizer.h"

#include "runtime/hash.h"
#include "runtime/check.h"

namespace mowe::data {

RoutingTokenizer::RoutingTokenizer(int32_t default_vocab_size)
    : default_vocab_size_(default_vocab_size), end_masks_(default_vocab_size, 0) {
  MOWE_CHECK(default_vocab_size >= 0, "negative default vocabulary size {}", default_vocab_size);
}

// Keys are hashed from their last piece backwards, one step per piece, so the hashes of all the
// suffixes ending at a position come out of one pass over its left context.
uint64_t RoutingTokenizer::step(uint64_t h, int32_t token) {
  return (h ^ static_cast<uint32_t>(token)) * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL;
}

uint64_t RoutingTokenizer::finish(uint64_t h) {
  return mix64(h);
}

int64_t RoutingTokenizer::bytes() const {
  return static_cast<int64_t>(slots_.size() * sizeof(Slot) + keys_.size() * sizeof(int32_t) +
                              end_masks_.size() * sizeof(uint16_t));
}

int32_t RoutingTokenizer::probe(uint64_t hash, const int32_t* key_end, int length) const {
  const uint64_t mask = slots_.size() - 1;
  for (uint64_t i = hash >> shift_;; i = (i + 1) & mask) {
    const Slot& s = slots_[i];
    if (s.routing_id < 0) return -1;
    if (s.hash != hash || static_cast<int>(s.key & 15) != length) continue;
    const int32_t* stored = keys_.data() + (s.key >> 4);
    const int32_t* key = key_end - length + 1;
    bool same = true;
    for (int k = 0; k < length; ++k) same &= stored[k] == key[k];
    if (same) return s.routing_id;
  }
}

void RoutingTokenizer::place(const Slot& slot) {
  const uint64_t mask = slots_.size() - 1;
  uint64_t i = slot.hash >> shift_;
  while (slots_[i].routing_id >= 0) i = (i + 1) & mask;
  slots_[i] = slot;
}

// Keeps the load factor at or below 1/2: short probe runs, mostly inside one cache line.
void RoutingTokenizer::grow() {
  std::vector<Slot> old = std::move(slots_);
  size_t capacity = old.empty() ? 1024 : old.size() * 2;
  slots_.assign(capacity, Slot{0, -1, 0});
  shift_ = 64 - __builtin_ctzll(capacity);
  for (const Slot& s : old)
    if (s.routing_id >= 0) place(s);
}

bool RoutingTokenizer::insert(std::span<const int32_t> key, int32_t routing_id) {
  const int length = static_cast<int>(key.size());
  MOWE_CHECK(length >= 2 && length <= kMaxKeyLength,
             "routing table keys have 2..{} pieces (single pieces are their own routing ids), "
             "got {}",
             kMaxKeyLength, length);
  MOWE_CHECK(routing_id >= 0, "negative routing id {}", routing_id);
  for (int32_t t : key) {
    MOWE_CHECK(t >= 0 && t < default_vocab_size_, "key piece {} is outside [0, {})", t,
               default_vocab_size_);
    MOWE_CHECK(!unrouted(t), "key piece {} is unrouted (pad, EOS or a sentinel)", t);
  }
  if (find(key) >= 0) return false;
  if (2 * (num_keys_ + 1) > static_cast<int64_t>(slots_.size())) grow();
  uint64_t h = 0;
  for (int k = length - 1; k >= 0; --k) h = step(h, key[k]);
  MOWE_CHECK(keys_.size() < (1u << 28), "routing table key storage is full");
  uint32_t ref = static_cast<uint32_t>(keys_.size()) << 4 | static_cast<uint32_t>(length);
  keys_.insert(keys_.end(), key.begin(), key.end());
  place(Slot{finish(h), routing_id, ref});
  end_masks_[key.back()] |= static_cast<uint16_t>(1u << length);
  ++num_keys_;
  return true;
}

int32_t RoutingTokenizer::find(std::span<const int32_t> key) const {
  const int length = static_cast<int>(key.size());
  if (length == 1) return key[0] >= 0 && key[0] < default_vocab_size_ ? key[0] : -1;
  if (length < 2 || length > kMaxKeyLength || slots_.empty()) return -1;
  for (int32_t t : key)
    if (t < 0 || t >= default_vocab_size_) return -1;
  if (!(end_masks_[key.back()] >> length & 1)) return -1;
  uint64_t h = 0;
  for (int k = length - 1; k >= 0; --k) h = step(h, key[k]);
  return probe(finish(h), key.data() + length - 1, length);
}

void RoutingTokenizer::set_unrouted(std::span<const int32_t> pieces) {
  for (int32_t t : pieces) {
    MOWE_CHECK(t >= 0 && t < default_vocab_size_, "unrouted piece {} is outside [0, {})", t,
               default_vocab_size_);
    MOWE_CHECK(end_masks_[t] == 0, "piece {} ends a key and cannot be unrouted", t);
    end_masks_[t] = kUnroutedBit;
  }
}

void RoutingTokenizer::route(const int32_t* tokens, int64_t n, int32_t* routing_ids) const {
  for (int64_t i = 0; i < n; ++i) {
    const int32_t t = tokens[i];
    MOWE_CHECK(static_cast<uint32_t>(t) < static_cast<uint32_t>(default_vocab_size_),
               "token id {} at position {} is not a default piece id (< {})", t, i,
               default_vocab_size_);
    // Lengths of keys ending in t that fit in the left context (bit L = length L).
    uint32_t lengths = end_masks_[t];
    if (lengths & kUnroutedBit) {
      routing_ids[i] = kNotRouted;
      continue;
    }
    if (i + 1 < kMaxKeyLength) lengths &= (2u << (i + 1)) - 1;
    int32_t id = t;
    if (lengths >> 2) {
      uint64_t hashes[kMaxKeyLength + 1];
      const int longest = 31 - __builtin_clz(lengths);
      uint64_t h = step(0, t);
      for (int len = 2; len <= longest; ++len) {
        h = step(h, tokens[i - len + 1]);
        hashes[len] = h;
      }
      for (int len = longest; len >= 2; --len) {
        if (!(lengths >> len & 1)) continue;
        int32_t found = probe(finish(hashes[len]), tokens + i, len);
        if (found >= 0) {
          id = found;
          break;
        }
      }
    }
    routing_ids[i] = id;
  }
}

}  // namespace mowe::data
