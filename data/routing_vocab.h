// The knowledge-rich routing vocabulary (paper, section 2.4). Candidates are the words of the
// WordNet lemma names (standing in for Wikidata entity names), lower-cased and split on white
// space and punctuation, ordered by their frequency in the training corpus; the words that occur
// are kept, up to model.mowe.routing_vocab_size routing ids in all. Routing ids [0, V) are the
// default pieces, then the words. Each word is tokenized as it appears in running text
// ("▁" + word); words that are a single piece already have that piece's id, words of more than 9
// pieces cannot be matched and are dropped. Case-variant keys (capitalised, upper case) map the
// cased forms to the same id. The file (data/proto/routing_vocab.proto in a checksummed frame,
// data/derived_file.h) also holds the frequency of every routing id in the raw training
// documents, the unrouted pieces (pad, EOS, sentinels: routing id -1) and the tokenizer's hash,
// size and a checksum of each of its pieces. A word list (build_from_word_list) can replace the
// WordNet names.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "data/proto/routing_vocab.pb.h"
#include "data/routing_tokenizer.h"
#include "data/token_stream.h"
#include "data/tokenizer.h"

namespace mowe::data {

struct RoutingVocabOptions {
  int64_t max_routing_ids = 1 << 20;  // model.mowe.routing_vocab_size
  bool case_variants = true;          // model.mowe.case_variants: frequencies counted with them
};

class RoutingVocab {
 public:
  // 3: unrouted pieces (pad, EOS, sentinels) and frequencies counted on raw text; 2 counted
  // them on span-corrupted examples and routed the specials; 1 was a bare protobuf.
  static constexpr uint32_t kFormatVersion = 3;
  static constexpr std::string_view kMagic = "MOWEVOCB";

  // Builds entries and keys from the candidate names (e.g. WordNet lemma names) and the
  // training documents (raw text for word counts, tokenized for the coverage statistics and the
  // frequencies: every document routed as running text, see count_routing_ids below).
  static RoutingVocab build(const Tokenizer& tokenizer, const std::vector<std::string>& names,
                            const std::vector<std::string>& documents,
                            const TokenizedCorpus& tokens, const RoutingVocabOptions& options);
  // The same with the entries of a word list (data/word_list.h, streamed: memory grows with
  // max_routing_ids, not with the list) instead of names: each entry as written is a key, so a
  // multi-word name becomes one routing id at its last piece.
  static RoutingVocab build_from_word_list(const Tokenizer& tokenizer, const std::string& word_list,
                                           const std::vector<std::string>& documents,
                                           const TokenizedCorpus& tokens,
                                           const RoutingVocabOptions& options);

  // Contents built elsewhere (tests, tools); `file` is taken as it is.
  static RoutingVocab from_file(RoutingVocabFile file);

  // Reads a file, refusing a damaged, truncated, older or foreign one with the mowe_vocab
  // command that rebuilds it; the second form also refuses a file built for another tokenizer,
  // naming both hashes, and says when the tokenizer model itself looks damaged.
  static RoutingVocab load(const std::string& path);
  static RoutingVocab load(const std::string& path, const Tokenizer& tokenizer);
  void check_tokenizer(const Tokenizer& tokenizer) const;
  // Empty, or why `tokenizer` looks like a damaged copy of the model this vocabulary was built
  // with: its hash differs, but it has the same number of pieces and most still match.
  std::string tokenizer_damage(const Tokenizer& tokenizer) const;
  void save(const std::string& path) const;  // atomically

  // The routing tokenizer: pieces, the words' keys and, when asked, their case variants; pad,
  // EOS and the sentinels unrouted (routing id -1).
  RoutingTokenizer table(bool case_variants) const;

  // Routing ids: the pieces and the words, or a synthetic vocabulary's routing_ids.
  int32_t size() const {
    return synthetic() ? file_.synthetic().routing_ids()
                       : default_vocab_size() + file_.entries_size();
  }
  bool synthetic() const { return file_.has_synthetic(); }
  int32_t default_vocab_size() const { return file_.default_vocab_size(); }
  uint64_t tokenizer_hash() const { return file_.tokenizer_hash(); }
  bool case_variants() const { return file_.case_variants(); }
  const RoutingVocabFile& file() const { return file_; }
  // The word of an auxiliary id; empty for piece ids and synthetic ids.
  const std::string& word(int32_t routing_id) const;

  std::vector<int64_t> frequencies() const;
  void set_frequencies(const std::vector<int64_t>& frequency, const std::string& source);
  // Routing ids by decreasing frequency, ties by increasing id: the order buckets are cut in.
  std::vector<int32_t> frequency_order() const;

 private:
  // The file's header: format, tokenizer identity, options, unrouted pieces.
  static RoutingVocab start(const Tokenizer& tokenizer, const RoutingVocabOptions& options);
  // Coverage statistics and frequencies once the entries and keys are in the tables.
  void finish(const Tokenizer& tokenizer, const TokenizedCorpus& tokens,
              const RoutingTokenizer& without_variants, const RoutingTokenizer& with_variants);

  RoutingVocabFile file_;
  std::string path_;
};

// Occurrences of every routing id (size num_routing_ids) in the routing tokenization of the
// documents, each routed on its own as running text; unrouted pieces (routing id -1) are not
// counted. This is how routing-id frequencies are defined (the paper's frequency in raw text).
std::vector<int64_t> count_routing_ids(const RoutingTokenizer& table, const TokenizedCorpus& corpus,
                                       int32_t num_routing_ids);

// Share of all counted tokens taken by `count` routing ids starting at rank `first` of the
// frequency order (count < 0: all the rest).
double frequency_share(const std::vector<int64_t>& frequency, const std::vector<int32_t>& order,
                       int64_t first, int64_t count);

}  // namespace mowe::data
