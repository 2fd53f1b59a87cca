// mowe_eval's answer scores: SQuAD v1.1's exact match and token F1, with T5's sentinels and the
// special pieces removed first. Every F1 below is computed by hand from the normalised words.
#include <gtest/gtest.h>

#include "launch/train/decode.h"

namespace mowe::train {
namespace {

void expect_score(const std::string& predicted, const std::string& truth, double exact, double f1) {
  const AnswerScore s = score_answer(predicted, truth);
  EXPECT_EQ(s.exact, exact) << "'" << predicted << "' vs '" << truth << "'";
  EXPECT_DOUBLE_EQ(s.f1, f1) << "'" << predicted << "' vs '" << truth << "'";
}

TEST(AnswerScore, CaseArticlesAndPunctuationDoNotCount) {
  expect_score("The Cat.", "cat", 1, 1);
  expect_score("The boundary, of", "the boundary of", 1, 1);
  // Punctuation is deleted, not split on, as in the official script.
  expect_score("don't stop", "dont stop", 1, 1);
  expect_score("New York-based", "new yorkbased", 1, 1);
}

TEST(AnswerScore, TokenF1OfTheBagsOfWords) {
  // [boundary line] vs [boundary of]: 1 in common, precision 1/2, recall 1/2.
  expect_score("boundary line", "the boundary of", 0, 0.5);
  // [cat sat on mat] vs [cat on mat]: 3 in common, precision 3/4, recall 1: F1 6/7.
  expect_score("the cat sat on the mat", "a cat on a mat", 0, 6.0 / 7);
  // [b] vs [b b]: a word counts as often as both sides hold it; precision 1, recall 1/2.
  expect_score("a a b", "a b b", 0, 2.0 / 3);
  expect_score("dog", "cat", 0, 0);
}

TEST(AnswerScore, EmptyAnswersScoreZero) {
  expect_score("", "cat", 0, 0);
  expect_score("cat", "", 0, 0);
  expect_score("the a an , .", "cat", 0, 0);
  // Both empty: an exact match with no word in common, F1 0 (SQuAD v1.1).
  expect_score("", "", 1, 0);
}

TEST(AnswerScore, SentinelsAndSpecialPiecesAreNotWords) {
  // An output of sentinels and colons only is an empty answer.
  expect_score("<extra_id_0>: <extra_id_1>: <extra_id_27>:", "cat sat", 0, 0);
  expect_score("<extra_id_0> the cat <extra_id_1> sat</s>", "<extra_id_0> cat <extra_id_1> sat", 1,
               1);
  expect_score("<pad>cat \xe2\x81\x87 <unk></s>", "cat", 1, 1);
  // A sentinel splits the words it sits between.
  expect_score("cat<extra_id_3>sat", "cat sat", 1, 1);
  // Not a sentinel (unclosed, no number): ordinary text, punctuation removed.
  expect_score("<extra_id_12", "extraid12", 1, 1);
  expect_score("<extra_id_>", "extraid", 1, 1);
}

}  // namespace
}  // namespace mowe::train
