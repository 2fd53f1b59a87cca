// The project's hash functions, defined once. Their values reach files and cross ranks (file
// and config fingerprints, routing-table keys, the held-out split, parameter initialisation,
// dropout masks), so each function's result is fixed forever: a change would make every
// checkpoint, plan and routing vocabulary written before unreadable, or a resumed run differ.
// Header-only and __host__ __device__ where a kernel needs it (dropout masks).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#if defined(__CUDACC__)
#define MOWE_HD __host__ __device__
#else
#define MOWE_HD
#endif

namespace mowe {

// SplitMix64's finalizer: a bijective 64-bit mix.
MOWE_HD inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// FNV-1a, 64 bits, unmixed: the classic function, for fingerprints compared across ranks and
// for keys that earlier files hold.
inline constexpr uint64_t kFnv1aOffset = 1469598103934665603ULL;
inline constexpr uint64_t kFnv1aPrime = 1099511628211ULL;
inline uint64_t fnv1a(std::string_view bytes, uint64_t h = kFnv1aOffset) {
  for (unsigned char c : bytes) h = (h ^ c) * kFnv1aPrime;
  return h;
}

// FNV-1a's step taken once per token (a whole 32-bit id, not its bytes): content hashes of
// token sequences. Starts from `h`; the caller mixes the result.
template <typename Int>
uint64_t fnv1a_tokens(const Int* tokens, size_t n, uint64_t h) {
  for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<uint32_t>(tokens[i])) * kFnv1aPrime;
  return h;
}

// Hash of a tuple of integers: hash_ints(seed, a, b, ...).
inline uint64_t hash_ints(uint64_t h) {
  return mix64(h);
}
template <typename... Rest>
uint64_t hash_ints(uint64_t h, uint64_t next, Rest... rest) {
  return hash_ints(mix64(h + 0x9e3779b97f4a7c15ULL) ^ next, rest...);
}

// FNV-1a over bytes from a seeded start, then mixed: stable across platforms (file
// fingerprints, split decisions).
inline uint64_t hash_bytes(std::string_view bytes, uint64_t seed = 0) {
  return mix64(fnv1a(bytes, kFnv1aOffset ^ mix64(seed)));
}

}  // namespace mowe
