#include "data/token_stream.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <mutex>
#include <numeric>
#include <thread>

#include "data/rng.h"
#include "runtime/check.h"

namespace mowe::data {

TokenizedCorpus tokenize_documents(const std::vector<std::string>& documents,
                                   const Tokenizer& tokenizer, int threads,
                                   const std::function<void(int64_t, int64_t)>& progress) {
  const int64_t n = static_cast<int64_t>(documents.size());
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  threads = static_cast<int>(std::min<int64_t>(threads, std::max<int64_t>(n / 256, 1)));
  // Contiguous blocks per thread, concatenated in order afterwards: the result does not depend
  // on the thread count.
  std::vector<TokenizedCorpus> parts(threads);
  std::atomic<int64_t> done{0};
  std::atomic<int> finished{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto work = [&](int part) {
    try {
      TokenizedCorpus& out = parts[part];
      const int64_t begin = n * part / threads, end = n * (part + 1) / threads;
      for (int64_t d = begin; d < end; ++d) {
        tokenizer.encode(documents[d], &out.tokens);
        out.offsets.push_back(static_cast<int64_t>(out.tokens.size()));
        if ((d - begin) % 1024 == 1023) done += 1024;
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      error = std::current_exception();
    }
    ++finished;
  };
  std::vector<std::thread> pool;
  for (int p = 0; p < threads; ++p) pool.emplace_back(work, p);
  // The calling thread reports progress every few seconds until the workers are done.
  auto last = std::chrono::steady_clock::now();
  while (progress && finished.load() < threads) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (std::chrono::steady_clock::now() - last > std::chrono::seconds(5)) {
      progress(done.load(), n);
      last = std::chrono::steady_clock::now();
    }
  }
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
  TokenizedCorpus all;
  size_t total = 0;
  for (const auto& p : parts) total += p.tokens.size();
  all.tokens.reserve(total);
  all.offsets.reserve(n + 1);
  for (const auto& p : parts) {
    const int64_t base = static_cast<int64_t>(all.tokens.size());
    all.tokens.insert(all.tokens.end(), p.tokens.begin(), p.tokens.end());
    for (size_t d = 1; d < p.offsets.size(); ++d) all.offsets.push_back(base + p.offsets[d]);
  }
  if (progress) progress(n, n);
  return all;
}

uint64_t permute_index(uint64_t index, uint64_t n, uint64_t key) {
  MOWE_CHECK(index < n, "index {} outside [0, {})", index, n);
  if (n <= 1) return index;
  int bits = 64 - __builtin_clzll(n - 1);
  bits += bits & 1;  // even, so the two halves are equal; 2^bits < 4n keeps cycle walks short
  const int half = bits / 2;
  const uint64_t half_mask = (uint64_t{1} << half) - 1;
  uint64_t x = index;
  do {
    uint64_t left = x >> half, right = x & half_mask;
    for (uint64_t round = 0; round < 4; ++round) {
      uint64_t f = hash_ints(key, round, right) & half_mask;
      uint64_t next = left ^ f;
      left = right;
      right = next;
    }
    x = left << half | right;
  } while (x >= n);
  return x;
}

TokenStream::TokenStream(const TokenizedCorpus& corpus, int32_t eos_id, uint64_t seed)
    : seed_(seed) {
  std::vector<int64_t> order(corpus.num_documents());
  std::iota(order.begin(), order.end(), 0);
  Rng rng(hash_ints(seed, 0x0d0c));
  shuffle(order.data(), order.size(), rng);
  tokens_.reserve(corpus.tokens.size() + order.size());
  for (int64_t d : order) {
    auto doc = corpus.document(d);
    tokens_.insert(tokens_.end(), doc.begin(), doc.end());
    tokens_.push_back(eos_id);
  }
  uint64_t h = hash_ints(seed, tokens_.size());
  hash_ = mix64(fnv1a_tokens(tokens_.data(), tokens_.size(), h));
}

TokenStream::TokenStream(std::vector<int32_t> tokens, uint64_t seed)
    : tokens_(std::move(tokens)), seed_(seed) {
  uint64_t h = hash_ints(seed, tokens_.size());
  hash_ = mix64(fnv1a_tokens(tokens_.data(), tokens_.size(), h));
}

std::span<const int32_t> TokenStream::example(int64_t example, int64_t chunk_length) const {
  const int64_t chunks = num_chunks(chunk_length);
  MOWE_REQUIRE(chunks > 0,
               "the token stream has {} tokens, fewer than one example of {}: use a larger corpus "
               "or a smaller data.input_length",
               size(), chunk_length);
  MOWE_CHECK(example >= 0, "negative example index {}", example);
  const uint64_t epoch = static_cast<uint64_t>(example / chunks);
  const uint64_t chunk = permute_index(example % chunks, chunks, hash_ints(seed_, 0xe90c, epoch));
  return {tokens_.data() + chunk * chunk_length, static_cast<size_t>(chunk_length)};
}

}  // namespace mowe::data
