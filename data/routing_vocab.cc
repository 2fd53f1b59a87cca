#include "data/routing_vocab.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <functional>
#include <numeric>
#include <unordered_map>
#include <unordered_set>

#include "data/derived_file.h"
#include "data/token_stream.h"
#include "data/word_list.h"
#include "data/words.h"
#include "runtime/check.h"
#include "runtime/checkpoint/crc32c.h"
#include "runtime/config/config.h"

namespace mowe::data {
namespace {

constexpr DerivedFile kVocabFile{"routing vocabulary", RoutingVocab::kMagic,
                                 RoutingVocab::kFormatVersion, "data.routing_vocab"};

// CRC32C of every piece of a tokenizer, by id.
std::vector<uint32_t> piece_crcs(const Tokenizer& tokenizer) {
  std::vector<uint32_t> crcs;
  for (int32_t id = 0; id < tokenizer.vocab_size(); ++id)
    crcs.push_back(checkpoint::crc32c(tokenizer.piece(id).data(), tokenizer.piece(id).size()));
  return crcs;
}

struct Candidate {
  std::string word;
  int64_t count;
  int64_t list_frequency = 0;
  int32_t routing_id = -1;  // a piece id for single-piece words, else the auxiliary id
};

// Heterogeneous lookup, so counting words needs no string per word.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using WordCounts = std::unordered_map<std::string, int64_t, StringHash, std::equal_to<>>;

std::vector<Candidate> ranked_candidates(const std::vector<std::string>& names,
                                         const std::vector<std::string>& documents,
                                         RoutingVocabStats* stats) {
  WordCounts counts;
  for (const std::string& name : names)
    for_each_word(name, [&](std::string_view w) { counts.emplace(std::string(w), 0); });
  stats->set_candidate_words(static_cast<int64_t>(counts.size()));
  for (const std::string& doc : documents) {
    for_each_word(doc, [&](std::string_view w) {
      if (auto it = counts.find(w); it != counts.end()) ++it->second;
    });
  }
  std::vector<Candidate> ranked;
  for (auto& [word, count] : counts)
    if (count > 0) ranked.push_back({word, count});
  std::sort(ranked.begin(), ranked.end(), [](const Candidate& a, const Candidate& b) {
    return a.count != b.count ? a.count > b.count : a.word < b.word;
  });
  stats->set_occurring_words(static_cast<int64_t>(ranked.size()));
  return ranked;
}

bool has_unknown(const std::vector<int32_t>& tokens) {
  return std::find(tokens.begin(), tokens.end(), Tokenizer::kUnkId) != tokens.end();
}

bool has_unrouted(const std::vector<int32_t>& tokens, const RoutingTokenizer& table) {
  return std::any_of(tokens.begin(), tokens.end(), [&](int32_t t) { return table.unrouted(t); });
}

// Tokenizations of a long sequence of texts, encoded a block at a time on every core (SentencePiece
// is most of the time of a large vocabulary) and handed out in order; a block is encoded only
// when its first text is asked for, so stopping early leaves the rest untokenized.
class EncodedBlocks {
 public:
  static constexpr size_t kBlock = 16384;

  EncodedBlocks(const Tokenizer& tokenizer, size_t n,
                std::function<const std::string&(size_t)> text)
      : tokenizer_(tokenizer), n_(n), text_(std::move(text)) {}

  const std::vector<int32_t>& tokens(size_t i) {
    if (i < first_ || i >= first_ + block_.num_documents()) encode_block(i - i % kBlock);
    const auto doc = block_.document(static_cast<int64_t>(i - first_));
    current_.assign(doc.begin(), doc.end());
    return current_;
  }

 private:
  void encode_block(size_t first) {
    std::vector<std::string> texts;
    for (size_t i = first; i < std::min(n_, first + kBlock); ++i) texts.push_back(text_(i));
    block_ = tokenize_documents(texts, tokenizer_);
    first_ = first;
  }

  const Tokenizer& tokenizer_;
  size_t n_;
  std::function<const std::string&(size_t)> text_;
  size_t first_ = 0;
  TokenizedCorpus block_;
  std::vector<int32_t> current_;
};

// Entries in frequency order; single-piece words keep their piece id for the variant keys.
// Returns how many candidates were examined: all of them, unless `stop_when_full` stops at the
// first one after the last id is given (a word list's tail is never tokenized).
size_t add_entries(const Tokenizer& tokenizer, std::vector<Candidate>* ranked, int64_t max_words,
                   bool stop_when_full, RoutingTokenizer* table, RoutingVocabFile* file) {
  RoutingVocabStats* stats = file->mutable_stats();
  const int32_t v = tokenizer.vocab_size();
  EncodedBlocks encoded(tokenizer, ranked->size(),
                        [&](size_t i) -> const std::string& { return (*ranked)[i].word; });
  for (size_t i = 0; i < ranked->size(); ++i) {
    if (stop_when_full && file->entries_size() >= max_words) return i;
    Candidate& c = (*ranked)[i];
    const std::vector<int32_t>& tokens = encoded.tokens(i);
    // No piece at all (text the tokenizer normalises away) cannot be a key either.
    if (tokens.empty() || has_unknown(tokens)) {
      stats->set_dropped_unknown(stats->dropped_unknown() + 1);
    } else if (has_unrouted(tokens, *table)) {
      // A sentinel written out in the text ("<extra_id_0>" is a user-defined piece that
      // SentencePiece matches in text): not a word, and keys never contain one.
      stats->set_dropped_special(stats->dropped_special() + 1);
    } else if (tokens.size() == 1) {
      stats->set_single_piece_words(stats->single_piece_words() + 1);
      c.routing_id = tokens[0];
    } else if (tokens.size() > RoutingTokenizer::kMaxKeyLength) {
      stats->set_dropped_too_long(stats->dropped_too_long() + 1);
    } else if (file->entries_size() >= max_words) {
      stats->set_dropped_over_limit(stats->dropped_over_limit() + 1);
    } else if (table->find(tokens) >= 0) {
      stats->set_dropped_duplicate(stats->dropped_duplicate() + 1);
    } else {
      c.routing_id = v + file->entries_size();
      table->insert(tokens, c.routing_id);
      RoutingEntry* e = file->add_entries();
      e->set_word(c.word);
      e->set_word_count(c.count);
      if (c.list_frequency > 0) e->set_list_frequency(c.list_frequency);
      e->mutable_tokens()->Add(tokens.begin(), tokens.end());
    }
  }
  return ranked->size();
}

std::string capitalised(const std::string& w) {
  std::string out = w;
  if (!out.empty() && out[0] >= 'a' && out[0] <= 'z') out[0] = static_cast<char>(out[0] - 32);
  return out;
}

std::string upper(const std::string& w) {
  std::string out = w;
  for (char& ch : out)
    if (ch >= 'a' && ch <= 'z') ch = static_cast<char>(ch - 32);
  return out;
}

std::string lower(const std::string& w) {
  std::string out = w;
  for (char& ch : out)
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch + 32);
  return out;
}

// Every space-separated word capitalised: "new york" -> "New York".
std::string title(const std::string& w) {
  std::string out = lower(w);
  for (size_t i = 0; i < out.size(); ++i)
    if ((i == 0 || out[i - 1] == ' ') && out[i] >= 'a' && out[i] <= 'z')
      out[i] = static_cast<char>(out[i] - 32);
  return out;
}

// The case variants of a word or name other than itself, in insertion order: capitalised,
// title case, upper case, lower case. For a lower-case word that is "Word", "WORD" (title case
// and lower case repeat it); a listed "Barack Obama" gets "BARACK OBAMA" and "barack obama".
std::vector<std::string> case_variants_of(const std::string& w) {
  std::vector<std::string> forms;
  for (std::string form : {capitalised(w), title(w), upper(w), lower(w)})
    if (form != w && std::find(forms.begin(), forms.end(), form) == forms.end())
      forms.push_back(std::move(form));
  return forms;
}

// Variant keys come after every word's own key, so a word never loses its key to a variant.
void add_variant_keys(const Tokenizer& tokenizer, const std::vector<Candidate>& ranked,
                      RoutingTokenizer* table, RoutingVocabFile* file) {
  RoutingVocabStats* stats = file->mutable_stats();
  // Every form of every kept word, in insertion order, encoded in blocks on every core.
  std::vector<std::string> forms;
  std::vector<int32_t> owner;  // the routing id of each form's word
  for (const Candidate& c : ranked) {
    if (c.routing_id < 0) continue;
    for (std::string& form : case_variants_of(c.word)) {
      forms.push_back(std::move(form));
      owner.push_back(c.routing_id);
    }
  }
  EncodedBlocks encoded(tokenizer, forms.size(),
                        [&](size_t i) -> const std::string& { return forms[i]; });
  for (size_t i = 0; i < forms.size(); ++i) {
    const std::vector<int32_t>& tokens = encoded.tokens(i);
    if (tokens.size() < 2) continue;  // a piece of its own: its piece id is its routing id
    if (tokens.size() > RoutingTokenizer::kMaxKeyLength || has_unknown(tokens) ||
        has_unrouted(tokens, *table) || !table->insert(tokens, owner[i])) {
      stats->set_variant_keys_skipped(stats->variant_keys_skipped() + 1);
      continue;
    }
    RoutingKey* key = file->add_variant_keys();
    key->set_routing_id(owner[i]);
    key->mutable_tokens()->Add(tokens.begin(), tokens.end());
  }
}

// Shares of words (by their last piece) and of tokens that get an auxiliary routing id.
void coverage(const Tokenizer& tokenizer, const TokenizedCorpus& corpus,
              const RoutingTokenizer& table, double* word_share, double* token_share,
              int64_t* words, int64_t* tokens) {
  const int32_t v = tokenizer.vocab_size();
  int64_t aux_words = 0, aux_tokens = 0;
  *words = 0, *tokens = 0;
  std::vector<int32_t> ids;
  for (int64_t d = 0; d < corpus.num_documents(); ++d) {
    auto doc = corpus.document(d);
    ids.resize(doc.size());
    table.route(doc, ids);
    for (size_t i = 0; i < doc.size(); ++i) {
      *words += tokenizer.starts_word(doc[i]);
      const bool last_piece = i + 1 == doc.size() || tokenizer.starts_word(doc[i + 1]);
      aux_words += last_piece && ids[i] >= v;
      aux_tokens += ids[i] >= v;
    }
    *tokens += static_cast<int64_t>(doc.size());
  }
  *word_share = *words ? double(aux_words) / *words : 0.0;
  *token_share = *tokens ? double(aux_tokens) / *tokens : 0.0;
}

// The pieces that are not words: pad (also the decoder's start token), EOS, every sentinel.
std::vector<int32_t> special_pieces(const Tokenizer& tokenizer) {
  std::vector<int32_t> pieces = {Tokenizer::kPadId, Tokenizer::kEosId};
  for (int k = 0; k < tokenizer.num_sentinels(); ++k) pieces.push_back(tokenizer.sentinel(k));
  std::sort(pieces.begin(), pieces.end());
  pieces.erase(std::unique(pieces.begin(), pieces.end()), pieces.end());
  return pieces;
}

}  // namespace

RoutingVocab RoutingVocab::start(const Tokenizer& tokenizer, const RoutingVocabOptions& options) {
  RoutingVocab vocab;
  RoutingVocabFile& f = vocab.file_;
  f.set_format_version(kFormatVersion);
  f.set_tokenizer_hash(tokenizer.hash());
  f.set_tokenizer_path(tokenizer.source());
  f.set_default_vocab_size(tokenizer.vocab_size());
  f.set_case_variants(options.case_variants);
  f.set_tokenizer_bytes(static_cast<int64_t>(tokenizer.model().size()));
  for (uint32_t crc : piece_crcs(tokenizer)) f.add_tokenizer_piece_crc32c(crc);
  for (int32_t piece : special_pieces(tokenizer)) f.add_unrouted_pieces(piece);
  return vocab;
}

void RoutingVocab::finish(const Tokenizer& tokenizer, const TokenizedCorpus& tokens,
                          const RoutingTokenizer& without, const RoutingTokenizer& with) {
  RoutingVocabStats* stats = file_.mutable_stats();
  double word_share = 0, token_share = 0;
  int64_t words = 0, corpus_tokens = 0;
  coverage(tokenizer, tokens, without, &word_share, &token_share, &words, &corpus_tokens);
  stats->set_word_share_without_variants(word_share);
  stats->set_token_share_without_variants(token_share);
  coverage(tokenizer, tokens, with, &word_share, &token_share, &words, &corpus_tokens);
  stats->set_word_share_with_variants(word_share);
  stats->set_token_share_with_variants(token_share);
  stats->set_corpus_words(words);
  stats->set_corpus_tokens(corpus_tokens);
  set_frequencies(count_routing_ids(case_variants() ? with : without, tokens, size()),
                  fmt::format("{} training documents ({} tokens) as raw text",
                              tokens.num_documents(), tokens.tokens.size()));
}

RoutingVocab RoutingVocab::build(const Tokenizer& tokenizer, const std::vector<std::string>& names,
                                 const std::vector<std::string>& documents,
                                 const TokenizedCorpus& tokens,
                                 const RoutingVocabOptions& options) {
  RoutingVocab vocab = start(tokenizer, options);
  RoutingVocabFile& f = vocab.file_;
  std::vector<Candidate> ranked = ranked_candidates(names, documents, f.mutable_stats());
  const int64_t max_words = std::max<int64_t>(0, options.max_routing_ids - tokenizer.vocab_size());
  RoutingTokenizer table(tokenizer.vocab_size());
  table.set_unrouted({f.unrouted_pieces().data(), static_cast<size_t>(f.unrouted_pieces_size())});
  add_entries(tokenizer, &ranked, max_words, /*stop_when_full=*/false, &table, &f);
  RoutingTokenizer without = table;
  add_variant_keys(tokenizer, ranked, &table, &f);
  vocab.finish(tokenizer, tokens, without, table);
  return vocab;
}

RoutingVocab RoutingVocab::build_from_word_list(const Tokenizer& tokenizer,
                                                const std::string& word_list,
                                                const std::vector<std::string>& documents,
                                                const TokenizedCorpus& tokens,
                                                const RoutingVocabOptions& options) {
  RoutingVocab vocab = start(tokenizer, options);
  RoutingVocabFile& f = vocab.file_;
  f.set_word_list(word_list);
  RoutingVocabStats* stats = f.mutable_stats();
  const int64_t max_words = std::max<int64_t>(0, options.max_routing_ids - tokenizer.vocab_size());
  RoutingTokenizer table(tokenizer.vocab_size());
  table.set_unrouted({f.unrouted_pieces().data(), static_cast<size_t>(f.unrouted_pieces_size())});
  const CorpusWords corpus(documents);
  // The best entries, a quarter more than the ids to fill (single-piece, too long and duplicate
  // entries take none); when that was not enough, another pass takes the next ones.
  const int64_t keep = max_words + max_words / 4 + 1024;
  std::vector<Candidate> kept;  // entries with a routing id, for their variant keys
  int64_t examined = 0;
  WordListEntry last;
  // The texts earlier passes ranked: their other lines never take a place in a later pass.
  std::unordered_set<uint64_t> taken;
  for (int pass = 0;; ++pass) {
    WordListStats list;
    std::vector<WordListEntry> ranked = rank_word_list(
        word_list, corpus, keep, pass ? &last : nullptr, &list, int64_t{1} << 20, &taken);
    for (const WordListEntry& e : ranked) taken.insert(entry_key(e.text));
    if (pass == 0) {
      stats->set_list_lines(list.lines);
      stats->set_list_invalid_utf8(list.invalid_utf8);
      stats->set_list_malformed(list.malformed);
      stats->set_dropped_too_long(list.too_many_words);
      stats->set_candidate_words(list.entries);
      stats->set_occurring_words(list.in_corpus);
    }
    std::vector<Candidate> candidates;
    candidates.reserve(ranked.size());
    for (WordListEntry& e : ranked)
      candidates.push_back({std::move(e.text), e.corpus_count, e.list_frequency});
    const size_t used =
        add_entries(tokenizer, &candidates, max_words, /*stop_when_full=*/true, &table, &f);
    examined += static_cast<int64_t>(used);
    if (!ranked.empty()) last = std::move(ranked.back());
    const bool exhausted = static_cast<int64_t>(ranked.size()) < keep;
    std::vector<WordListEntry>().swap(ranked);  // memory for the variant keys' pass
    for (size_t i = 0; i < used; ++i)
      if (candidates[i].routing_id >= 0) kept.push_back(std::move(candidates[i]));
    spdlog::info("[vocab] word list pass {}: {} entries ranked, {} tokenized, {} ids so far",
                 pass + 1, candidates.size(), used, f.entries_size());
    if (f.entries_size() >= max_words || exhausted) break;
  }
  if (f.entries_size() == 0)
    spdlog::warn(
        "[vocab] data.routing_word_list {}: no auxiliary word ({} lines, {} entries{}): the "
        "routing vocabulary holds the {} tokenizer pieces only; check the file (one word or name "
        "per line)",
        word_list, stats->list_lines(), stats->candidate_words(),
        stats->list_lines() == 0 ? ": the file is empty" : "", tokenizer.vocab_size());
  stats->set_dropped_over_limit(stats->candidate_words() - examined);
  int64_t absent = 0;
  for (const RoutingEntry& e : f.entries()) absent += e.word_count() == 0;
  stats->set_entries_not_in_corpus(absent);
  RoutingTokenizer without = table;
  add_variant_keys(tokenizer, kept, &table, &f);
  vocab.finish(tokenizer, tokens, without, table);
  return vocab;
}

RoutingVocab RoutingVocab::from_file(RoutingVocabFile file) {
  RoutingVocab vocab;
  vocab.file_ = std::move(file);
  return vocab;
}

RoutingVocab RoutingVocab::load(const std::string& path) {
  const std::string rebuild = config::command_for_this_config("mowe_vocab");
  RoutingVocab vocab;
  vocab.path_ = path;
  const std::string payload = read_derived_file(kVocabFile, path, rebuild);
  auto refuse = [&](const std::string& problem) {
    throw UserError(derived_file_problem(kVocabFile, path, problem, rebuild));
  };
  // The checksum matched: contents that do not hold together were written wrong, not damaged.
  if (!vocab.file_.ParseFromString(payload)) refuse("passes its checksum but does not parse");
  const RoutingVocabFile& f = vocab.file_;
  if (f.format_version() != kFormatVersion)
    refuse(fmt::format("records format version {} inside a version {} frame", f.format_version(),
                       kFormatVersion));
  if (f.default_vocab_size() <= 0) refuse("has no default vocabulary size");
  if (f.has_synthetic() &&
      (f.entries_size() > 0 || f.synthetic().routing_ids() < f.default_vocab_size()))
    refuse(fmt::format("is synthetic with {} routing ids, yet has {} words and {} pieces",
                       f.synthetic().routing_ids(), f.entries_size(), f.default_vocab_size()));
  if (f.frequency_size() != 0 && f.frequency_size() != vocab.size())
    refuse(
        fmt::format("holds {} frequencies for {} routing ids", f.frequency_size(), vocab.size()));
  return vocab;
}

RoutingVocab RoutingVocab::load(const std::string& path, const Tokenizer& tokenizer) {
  RoutingVocab vocab = load(path);
  vocab.check_tokenizer(tokenizer);
  return vocab;
}

std::string RoutingVocab::tokenizer_damage(const Tokenizer& tokenizer) const {
  const auto& recorded = file_.tokenizer_piece_crc32c();
  if (tokenizer.hash() == tokenizer_hash() || tokenizer.vocab_size() != recorded.size()) return "";
  const std::vector<uint32_t> now = piece_crcs(tokenizer);
  int32_t differ = 0;
  for (int32_t id = 0; id < tokenizer.vocab_size(); ++id) differ += now[id] != recorded[id];
  // A model trained anew (other data, another size or seed) has other pieces at most ids; one
  // that keeps most of them, yet not its bytes, is a damaged copy (a flipped score, piece or
  // normalization byte).
  if (2 * differ >= tokenizer.vocab_size()) return "";
  return fmt::format(
      "SentencePiece model {} looks damaged: its hash is {}, not the {} routing vocabulary {} "
      "recorded, yet {} of its {} pieces are the recorded ones ({} bytes, {} recorded): retrain "
      "both with {} (a vocabulary built on a damaged model keeps the damage)",
      tokenizer.source(), format_hash(tokenizer.hash()), format_hash(tokenizer_hash()),
      path_.empty() ? "(in memory)" : path_, tokenizer.vocab_size() - differ,
      tokenizer.vocab_size(), tokenizer.model().size(), file_.tokenizer_bytes(),
      config::command_for_this_config("mowe_vocab", "--retrain"));
}

void RoutingVocab::check_tokenizer(const Tokenizer& tokenizer) const {
  if (tokenizer.hash() == tokenizer_hash() && tokenizer.vocab_size() == default_vocab_size())
    return;
  if (std::string damage = tokenizer_damage(tokenizer); !damage.empty()) throw UserError(damage);
  // Both files are intact (the vocabulary's checksum matched; the model's pieces are not the
  // recorded ones): the tokenizer was replaced, and the vocabulary must follow it.
  throw UserError(fmt::format(
      "routing vocabulary {} was built with another tokenizer: it records tokenizer hash {} "
      "({} pieces, {}), but {} has hash {} ({} pieces); rebuild it with {}",
      path_.empty() ? "(in memory)" : path_, format_hash(tokenizer_hash()), default_vocab_size(),
      file_.tokenizer_path(), tokenizer.source(), format_hash(tokenizer.hash()),
      tokenizer.vocab_size(), config::command_for_this_config("mowe_vocab")));
}

void RoutingVocab::save(const std::string& path) const {
  std::string bytes;
  MOWE_CHECK(file_.SerializeToString(&bytes), "cannot serialize the routing vocabulary");
  write_derived_file(kVocabFile, path, bytes);
}

RoutingTokenizer RoutingVocab::table(bool case_variants) const {
  RoutingTokenizer table(default_vocab_size());
  for (int32_t piece : file_.unrouted_pieces())
    MOWE_CHECK(piece >= 0 && piece < default_vocab_size(),
               "routing vocabulary {}: unrouted piece {} outside [0, {})", path_, piece,
               default_vocab_size());
  table.set_unrouted(
      {file_.unrouted_pieces().data(), static_cast<size_t>(file_.unrouted_pieces_size())});
  for (int k = 0; k < file_.entries_size(); ++k) {
    const auto& tokens = file_.entries(k).tokens();
    MOWE_CHECK(
        table.insert({tokens.data(), static_cast<size_t>(tokens.size())}, default_vocab_size() + k),
        "routing vocabulary {}: entry '{}' repeats the tokens of an earlier one", path_,
        file_.entries(k).word());
  }
  if (!case_variants) return table;
  for (const RoutingKey& key : file_.variant_keys()) {
    MOWE_CHECK(key.routing_id() >= 0 && key.routing_id() < size(),
               "routing vocabulary {}: variant key with routing id {} outside [0, {})", path_,
               key.routing_id(), size());
    table.insert({key.tokens().data(), static_cast<size_t>(key.tokens_size())}, key.routing_id());
  }
  return table;
}

const std::string& RoutingVocab::word(int32_t routing_id) const {
  static const std::string kNone;
  if (routing_id < default_vocab_size() ||
      routing_id - default_vocab_size() >= file_.entries_size())
    return kNone;
  return file_.entries(routing_id - default_vocab_size()).word();
}

std::vector<int64_t> RoutingVocab::frequencies() const {
  return {file_.frequency().begin(), file_.frequency().end()};
}

void RoutingVocab::set_frequencies(const std::vector<int64_t>& frequency,
                                   const std::string& source) {
  MOWE_CHECK(static_cast<int32_t>(frequency.size()) == size(), "{} frequencies for {} routing ids",
             frequency.size(), size());
  file_.mutable_frequency()->Assign(frequency.begin(), frequency.end());
  file_.set_corpus(source);
}

std::vector<int32_t> RoutingVocab::frequency_order() const {
  std::vector<int32_t> order(size());
  std::iota(order.begin(), order.end(), 0);
  const auto& f = file_.frequency();
  if (f.size() != size()) return order;
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return f[a] > f[b]; });
  return order;
}

std::vector<int64_t> count_routing_ids(const RoutingTokenizer& table, const TokenizedCorpus& corpus,
                                       int32_t num_routing_ids) {
  std::vector<int64_t> counts(num_routing_ids, 0);
  std::vector<int32_t> ids;
  for (int64_t d = 0; d < corpus.num_documents(); ++d) {
    auto doc = corpus.document(d);
    ids.resize(doc.size());
    table.route(doc, ids);
    for (int32_t id : ids) {
      if (id == RoutingTokenizer::kNotRouted) continue;
      MOWE_CHECK(id >= 0 && id < num_routing_ids, "routing id {} outside [0, {})", id,
                 num_routing_ids);
      ++counts[id];
    }
  }
  return counts;
}

double frequency_share(const std::vector<int64_t>& frequency, const std::vector<int32_t>& order,
                       int64_t first, int64_t count) {
  const int64_t total = std::accumulate(frequency.begin(), frequency.end(), int64_t{0});
  const int64_t n = static_cast<int64_t>(order.size());
  const int64_t end = count < 0 ? n : std::min(n, first + count);
  int64_t sum = 0;
  for (int64_t r = std::min(first, n); r < end; ++r) sum += frequency[order[r]];
  return total ? double(sum) / total : 0.0;
}

}  // namespace mowe::data
