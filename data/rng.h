// The data pipeline's random generator. Everything random in data/ (held-out split, document
// order, epoch order, span corruption) is a pure function of the seed and a position, built from
// this generator and the hashes of runtime/hash.h, so results never depend on threads, ranks or
// the standard library's distributions (whose algorithms differ between implementations).
#pragma once

#include <cstdint>

#include "runtime/hash.h"

namespace mowe::data {

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
