// Span corruption: T5's lengths and counts, and the invariants of the corrupted pair.
#include "data/span_corruption.h"

#include <gtest/gtest.h>

#include <map>

#include "runtime/check.h"

namespace mowe::data {
namespace {

constexpr int32_t kEos = 1;

std::vector<int32_t> sentinel_ids(int n) {
  std::vector<int32_t> ids;
  for (int k = 0; k < n; ++k) ids.push_back(3 + k);
  return ids;
}

// Puts every target span back in place of its sentinel in the inputs.
std::vector<int32_t> interleave(const std::vector<int32_t>& inputs,
                                const std::vector<int32_t>& targets,
                                const std::vector<int32_t>& sentinels) {
  std::map<int32_t, size_t> index;
  for (size_t k = 0; k < sentinels.size(); ++k) index[sentinels[k]] = k;
  std::vector<std::vector<int32_t>> spans(sentinels.size());
  int current = -1;
  for (size_t i = 0; i + 1 < targets.size(); ++i) {
    if (auto it = index.find(targets[i]); it != index.end()) {
      current = static_cast<int>(it->second);
    } else {
      EXPECT_GE(current, 0) << "targets must start with a sentinel";
      if (current >= 0) spans[current].push_back(targets[i]);
    }
  }
  std::vector<int32_t> out;
  for (size_t i = 0; i + 1 < inputs.size(); ++i) {
    if (auto it = index.find(inputs[i]); it != index.end())
      out.insert(out.end(), spans[it->second].begin(), spans[it->second].end());
    else
      out.push_back(inputs[i]);
  }
  return out;
}

TEST(SpanLengths, MatchT5RandomSpansHelper) {
  SpanLengths l = t5_span_lengths(512, 0.15, 3.0);
  EXPECT_EQ(l.tokens_length, 568);
  EXPECT_EQ(l.inputs_length, 512);
  EXPECT_EQ(l.targets_length, 114);
  NoiseCounts c = t5_noise_counts(568, 0.15, 3.0);
  EXPECT_EQ(c.noise_tokens, 85);
  EXPECT_EQ(c.noise_spans, 28);
  // Half-to-even rounding, as Python and tf.round do: 2.5 noise tokens -> 2.
  EXPECT_EQ(t5_noise_counts(10, 0.25, 1.0).noise_tokens, 2);
  EXPECT_EQ(t5_noise_counts(14, 0.25, 1.0).noise_tokens, 4);  // 3.5 -> 4
  l = t5_span_lengths(128, 0.15, 3.0);
  EXPECT_LE(l.inputs_length, 128);
}

TEST(SpanCorruption, InvariantsHoldForManySeedsAndLengths) {
  const auto sentinels = sentinel_ids(100);
  for (int64_t length : {568, 146, 34, 10, 3}) {
    const NoiseCounts c = t5_noise_counts(length, 0.15, 3.0);
    std::vector<int32_t> tokens(length);
    for (int64_t i = 0; i < length; ++i) tokens[i] = static_cast<int32_t>(1000 + i);
    for (uint64_t seed = 0; seed < 200; ++seed) {
      std::vector<uint8_t> noise = random_spans_noise_mask(length, 0.15, 3.0, seed);
      ASSERT_EQ(static_cast<int64_t>(noise.size()), length);
      int64_t noise_tokens = 0, spans = 0;
      for (int64_t i = 0; i < length; ++i) {
        noise_tokens += noise[i];
        spans += noise[i] && (i == 0 || !noise[i - 1]);
      }
      ASSERT_EQ(noise_tokens, c.noise_tokens) << length;
      ASSERT_EQ(spans, c.noise_spans) << length;
      EXPECT_EQ(noise.front(), 0);  // starts with a non-noise span
      EXPECT_EQ(noise.back(), 1);   // ends with a noise span
      std::vector<int32_t> inputs, targets;
      apply_noise_mask(tokens.data(), noise.data(), length, sentinels, kEos, &inputs, &targets);
      EXPECT_EQ(static_cast<int64_t>(inputs.size()), length - noise_tokens + spans + 1);
      EXPECT_EQ(static_cast<int64_t>(targets.size()), noise_tokens + spans + 1);
      EXPECT_EQ(inputs.back(), kEos);
      EXPECT_EQ(targets.back(), kEos);
      // Sentinels appear in order from <extra_id_0>, in both sequences.
      int next_in = 0, next_tgt = 0;
      for (int32_t t : inputs) {
        if (t >= 3 && t < 103) {
          EXPECT_EQ(t, sentinels[next_in++]);
        }
      }
      for (int32_t t : targets) {
        if (t >= 3 && t < 103) {
          EXPECT_EQ(t, sentinels[next_tgt++]);
        }
      }
      EXPECT_EQ(next_in, spans);
      EXPECT_EQ(next_tgt, spans);
      EXPECT_EQ(interleave(inputs, targets, sentinels), tokens);
    }
  }
}

TEST(SpanCorruption, MaskIsSeededAndVaries) {
  auto a = random_spans_noise_mask(568, 0.15, 3.0, 11);
  EXPECT_EQ(a, random_spans_noise_mask(568, 0.15, 3.0, 11));
  EXPECT_NE(a, random_spans_noise_mask(568, 0.15, 3.0, 12));
  // Over many seeds every position is sometimes noise (except the first, never).
  std::vector<int> hits(568, 0);
  for (uint64_t seed = 0; seed < 400; ++seed) {
    auto m = random_spans_noise_mask(568, 0.15, 3.0, seed);
    for (int i = 0; i < 568; ++i) hits[i] += m[i];
  }
  EXPECT_EQ(hits[0], 0);
  for (int i = 1; i < 568; ++i) EXPECT_GT(hits[i], 0) << i;
}

TEST(SpanCorruption, TooFewSentinelsIsAnError) {
  std::vector<int32_t> tokens(568, 1000), inputs, targets;
  auto noise = random_spans_noise_mask(568, 0.15, 3.0, 1);
  EXPECT_THROW(
      apply_noise_mask(tokens.data(), noise.data(), 568, sentinel_ids(8), kEos, &inputs, &targets),
      Error);
}

}  // namespace
}  // namespace mowe::data
