// Hashes and a counter-based random generator for the data pipeline. Everything random in data/
// (held-out split, document order, epoch order, span corruption) is a pure function of the seed
// and a position, built from these, so results never depend on threads, ranks or the standard
// library's distributions (whose algorithms differ between implementations).
#pragma once

#include <cstdint>
#include <string_view>

namespace mowe::data {

// SplitMix64's finalizer: a bijective 64-bit mix.
inline uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

// Hash of a tuple of integers: hash_ints(seed, a, b, ...).
inline uint64_t hash_ints(uint64_t h) {
  return mix64(h);
}
template <typename... Rest>
uint64_t hash_ints(uint64_t h, uint64_t next, Rest... rest) {
  return hash_ints(mix64(h + 0x9e3779b97f4a7c15ULL) ^ next, rest...);
}

// FNV-1a over bytes, then mixed: stable across platforms (file fingerprints, split decisions).
inline uint64_t hash_bytes(std::string_view bytes, uint64_t seed = 0) {
  uint64_t h = 1469598103934665603ULL ^ mix64(seed);
  for (unsigned char c : bytes) h = (h ^ c) * 1099511628211ULL;
  return mix64(h);
}

// A small generator (SplitMix64) with an exact, portable bounded draw.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    state_ += 0x9e3779b97f4a7c15ULL;
    return mix64(state_);
  }
  // Uniform in [0, n) without modulo bias (Lemire's multiply-and-reject), n > 0.
  uint64_t below(uint64_t n) {
    unsigned __int128 m = static_cast<unsigned __int128>(next()) * n;
    uint64_t low = static_cast<uint64_t>(m);
    if (low < n) {
      uint64_t threshold = (0 - n) % n;
      while (low < threshold) {
        m = static_cast<unsigned __int128>(next()) * n;
        low = static_cast<uint64_t>(m);
      }
    }
    return static_cast<uint64_t>(m >> 64);
  }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 private:
  uint64_t state_;
};

// Fisher-Yates shuffle with Rng: the same permutation on every platform.
template <typename T>
void shuffle(T* items, uint64_t n, Rng& rng) {
  for (uint64_t i = n; i > 1; --i) {
    uint64_t j = rng.below(i);
    T tmp = items[i - 1];
    items[i - 1] = items[j];
    items[j] = tmp;
  }
}

}  // namespace mowe::data
