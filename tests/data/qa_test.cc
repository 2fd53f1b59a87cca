// WORDNET_QA examples: gloss heads, the question about a known synset, the split that follows
// the pre-training documents'.
#include "data/qa.h"

#include <gtest/gtest.h>

#include <set>

namespace mowe::data {
namespace {

TEST(GlossHead, FirstWordsUpToPunctuationAtMostThree) {
  const auto head = [](std::string_view gloss) {
    return std::string(gloss.substr(0, gloss_head_length(gloss)));
  };
  EXPECT_EQ(head("a member of the genus Canis"), "a member of");
  EXPECT_EQ(head("informal term for a man; \"you lucky dog\""), "informal term for");
  EXPECT_EQ(head("a man; \"you lucky dog\""), "a man");
  EXPECT_EQ(head("well-known, old"), "well-known");
  EXPECT_EQ(head("(botany) a plant"), "");
  EXPECT_EQ(head("one"), "one");
  EXPECT_EQ(head(""), "");
  EXPECT_EQ(gloss_head_length("a b c d", 2), 3u);
}

TEST(WordnetQa, QuestionAndAnswerOfAKnownSynset) {
  const std::vector<Synset> synsets = read_wordnet("/usr/share/wordnet");
  const Synset* dog = nullptr;
  const Synset* apple = nullptr;
  for (const Synset& s : synsets) {
    if (!dog && s.lemmas[0] == "dog" && s.gloss.rfind("a member of the genus Canis", 0) == 0)
      dog = &s;
    if (!apple && s.lemmas[0] == "apple" && s.gloss.rfind("fruit with red", 0) == 0) apple = &s;
  }
  ASSERT_NE(dog, nullptr);
  ASSERT_NE(apple, nullptr);
  EXPECT_EQ(wordnet_question(*dog).question, "what is a dog?");
  EXPECT_EQ(wordnet_question(*dog).answer, "a member of");
  EXPECT_EQ(wordnet_question(*apple).question, "what is an apple?");
  EXPECT_EQ(wordnet_question(*apple).answer, "fruit with red");
}

// A synset's question goes where split_corpus sends its document: nothing held out is trained on.
TEST(WordnetQa, SplitFollowsTheDocumentSplit) {
  const std::vector<Synset> synsets = read_wordnet("/usr/share/wordnet");
  const double fraction = 0.05;
  const uint64_t seed = 1;
  const QaSplit qa = wordnet_qa(synsets, fraction, seed);
  std::vector<QaPair> train, validation;
  for (const Synset& s : synsets) {
    QaPair p = wordnet_question(s);
    if (p.answer.empty()) continue;
    const bool held_out = split_corpus({synset_document(s)}, fraction, seed).train.empty();
    (held_out ? validation : train).push_back(p);
  }
  ASSERT_EQ(qa.train.size(), train.size());
  ASSERT_EQ(qa.validation.size(), validation.size());
  for (size_t i = 0; i < train.size(); ++i) EXPECT_EQ(qa.train[i].question, train[i].question);
  for (size_t i = 0; i < validation.size(); ++i)
    EXPECT_EQ(qa.validation[i].question, validation[i].question);
  EXPECT_GT(qa.validation.size(), synsets.size() / 40);
  EXPECT_LT(qa.validation.size(), synsets.size() / 10);
}

TEST(QaExamples, EveryEpochVisitsEveryPairOnce) {
  std::vector<std::vector<int32_t>> in, out;
  for (int i = 0; i < 37; ++i) in.push_back({10 + i}), out.push_back({i});
  const QaExamples qa(in, out, 3);
  for (int epoch = 0; epoch < 3; ++epoch) {
    std::set<int64_t> seen;
    for (int g = 0; g < 37; ++g) seen.insert(qa.pair_of(epoch * 37 + g));
    EXPECT_EQ(seen.size(), 37u);
  }
  EXPECT_NE(qa.pair_of(0) * 37 + qa.pair_of(1), qa.pair_of(37) * 37 + qa.pair_of(38))
      << "each epoch has its own order";
  EXPECT_NE(QaExamples(in, out, 4).hash(), qa.hash());
  out[5].push_back(1);
  EXPECT_NE(QaExamples(in, out, 3).hash(), qa.hash());
}

}  // namespace
}  // namespace mowe::data
