#include "data/word_list.h"

#include <algorithm>
#include <charconv>
#include <set>

#include "data/input_file.h"
#include "data/routing_tokenizer.h"
#include "data/text.h"
#include "data/words.h"
#include "runtime/check.h"
#include "runtime/hash.h"

namespace mowe::data {
namespace {

constexpr int kMaxWords = RoutingTokenizer::kMaxKeyLength;  // a word is at least one piece

// Word-id sequences are hashed from their last word backwards, as routing keys are, so one pass
// over a position's left context yields every suffix's hash.
uint64_t step(uint64_t h, int32_t word) {
  return (h ^ static_cast<uint32_t>(word)) * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL;
}

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

// White space trimmed, each run of it one space.
std::string normalized(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (is_space(c)) {
      if (!out.empty() && out.back() != ' ') out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  if (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

// The best `keep` entries so far, one per text: a list that repeats an entry (a million times,
// say) must not fill the kept entries with copies of a few texts, which would take a pass over
// the list for each few ids. Memory is the kept entries', whatever the list's length.
class Best {
 public:
  explicit Best(int64_t keep) : keep_(keep) {}

  // Keeps e when it ranks among the best; of two entries with the same text, the better-ranked.
  // Counts a copy dropped for its text in *duplicates.
  void offer(WordListEntry&& e, int64_t* duplicates) {
    if (keep_ <= 0) return;
    const uint64_t key = entry_key(e.text);
    if (auto same = by_text_.find(key); same != by_text_.end()) {
      ++*duplicates;
      if (!ranks_before(e, *same->second)) return;
      ranked_.erase(same->second);
      by_text_.erase(same);
    } else if (static_cast<int64_t>(ranked_.size()) >= keep_) {
      auto worst = std::prev(ranked_.end());
      if (!ranks_before(e, *worst)) return;
      by_text_.erase(entry_key(worst->text));
      ranked_.erase(worst);
    }
    by_text_.emplace(key, ranked_.insert(std::move(e)).first);
  }

  // Best first.
  std::vector<WordListEntry> take() {
    std::vector<WordListEntry> out;
    out.reserve(ranked_.size());
    while (!ranked_.empty()) out.push_back(std::move(ranked_.extract(ranked_.begin()).value()));
    by_text_.clear();
    return out;
  }

 private:
  struct Order {
    bool operator()(const WordListEntry& a, const WordListEntry& b) const {
      return ranks_before(a, b);
    }
  };
  int64_t keep_;
  std::set<WordListEntry, Order> ranked_;
  std::unordered_map<uint64_t, std::set<WordListEntry, Order>::iterator> by_text_;
};

// One chunk of entries: the distinct word sequences they name, counted in one pass over the
// corpus. Memory is the chunk's, whatever the list's length.
class Chunk {
 public:
  explicit Chunk(const CorpusWords& corpus) : corpus_(corpus) {}

  // Adds an entry whose words are `words`; entries with a word the corpus lacks count 0.
  void add(WordListEntry&& e, const std::vector<std::string>& words) {
    int32_t slot = -1;
    ids_.clear();
    for (const std::string& w : words) ids_.push_back(corpus_.id(w));
    if (!ids_.empty() && std::find(ids_.begin(), ids_.end(), -1) == ids_.end()) {
      uint64_t h = 0;
      for (size_t k = ids_.size(); k-- > 0;) h = step(h, ids_[k]);
      h = mix64(h);
      auto [it, fresh] = slot_of_.emplace(h, static_cast<int32_t>(counts_.size()));
      if (fresh) counts_.push_back(0);
      slot = it->second;
      if (end_masks_.empty()) end_masks_.assign(corpus_.num_words(), 0);
      end_masks_[ids_.back()] |= static_cast<uint16_t>(1u << ids_.size());
      longest_ = std::max(longest_, static_cast<int>(ids_.size()));
    }
    entries_.push_back(std::move(e));
    slots_.push_back(slot);
  }

  int64_t size() const { return static_cast<int64_t>(entries_.size()); }

  // Counts the sequences in the corpus, then offers every entry ranking after `after` whose
  // text is not `taken`.
  void finish(const WordListEntry* after, const std::unordered_set<uint64_t>* taken, Best* best,
              WordListStats* stats) {
    count();
    for (size_t i = 0; i < entries_.size(); ++i) {
      WordListEntry& e = entries_[i];
      e.corpus_count = slots_[i] >= 0 ? counts_[slots_[i]] : 0;
      stats->in_corpus += e.corpus_count > 0;
      if (after && !ranks_before(*after, e)) continue;
      if (taken && taken->contains(entry_key(e.text))) {
        ++stats->duplicates;
        continue;
      }
      best->offer(std::move(e), &stats->duplicates);
    }
    entries_.clear(), slots_.clear(), counts_.clear(), slot_of_.clear();
    std::fill(end_masks_.begin(), end_masks_.end(), 0);
    longest_ = 0;
  }

 private:
  // Every position's suffixes of up to `longest_` words, looked up only for the lengths some
  // sequence ending in that word has: most positions cost no lookup.
  void count() {
    if (counts_.empty()) return;
    const std::vector<int32_t>& s = corpus_.stream();
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] < 0) continue;
      const uint32_t lengths = end_masks_[s[i]];
      if (!lengths) continue;
      uint64_t h = 0;
      for (int n = 1; n <= longest_ && static_cast<size_t>(n) <= i + 1; ++n) {
        const int32_t w = s[i + 1 - n];
        if (w < 0) break;  // documents do not run into each other
        h = step(h, w);
        if (!(lengths >> n & 1)) continue;
        if (auto it = slot_of_.find(mix64(h)); it != slot_of_.end()) ++counts_[it->second];
      }
    }
  }

  const CorpusWords& corpus_;
  std::vector<WordListEntry> entries_;
  std::vector<int32_t> slots_;  // per entry: its sequence's counter, -1 = not in the corpus
  std::vector<int64_t> counts_;
  // 64-bit hashes of the word-id sequences: two sequences of one chunk sharing a hash (odds
  // about n^2 / 2^64) would share a count.
  std::unordered_map<uint64_t, int32_t> slot_of_;
  std::vector<uint16_t> end_masks_;  // per corpus word: bit n = a sequence of n words ends in it
  std::vector<int32_t> ids_;
  int longest_ = 0;
};

}  // namespace

uint64_t entry_key(std::string_view text) {
  return hash_bytes(text);
}

bool ranks_before(const WordListEntry& a, const WordListEntry& b) {
  if (a.corpus_count != b.corpus_count) return a.corpus_count > b.corpus_count;
  if (a.list_frequency != b.list_frequency) return a.list_frequency > b.list_frequency;
  return a.line < b.line;
}

bool parse_word_list_line(std::string_view line, WordListEntry* entry, WordListStats* stats) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (!valid_utf8(line)) {
    ++stats->invalid_utf8;
    return false;
  }
  std::string_view text = line;
  entry->list_frequency = 0;
  if (size_t tab = line.find('\t'); tab != std::string_view::npos) {
    text = line.substr(0, tab);
    std::string_view f = line.substr(tab + 1);
    while (!f.empty() && is_space(f.back())) f.remove_suffix(1);
    int64_t value = -1;
    auto [end, error] = std::from_chars(f.data(), f.data() + f.size(), value);
    if (f.empty() || error != std::errc() || end != f.data() + f.size() || value < 0) {
      ++stats->malformed;
      return false;
    }
    entry->list_frequency = value;
  }
  entry->text = normalized(text);
  if (entry->text.empty()) {
    ++stats->malformed;
    return false;
  }
  return true;
}

CorpusWords::CorpusWords(const std::vector<std::string>& documents) {
  for (const std::string& doc : documents) {
    for_each_word(doc, [&](std::string_view w) {
      auto it = ids_.find(w);
      if (it == ids_.end())
        it = ids_.emplace(std::string(w), static_cast<int32_t>(ids_.size())).first;
      stream_.push_back(it->second);
    });
    stream_.push_back(-1);
  }
}

int32_t CorpusWords::id(std::string_view word) const {
  auto it = ids_.find(word);
  return it == ids_.end() ? -1 : it->second;
}

int64_t CorpusWords::bytes() const {
  int64_t b = static_cast<int64_t>(stream_.capacity() * sizeof(int32_t));
  for (const auto& [w, id] : ids_) b += static_cast<int64_t>(w.capacity() + 48);
  return b;
}

std::vector<WordListEntry> rank_word_list(const std::string& path, const CorpusWords& corpus,
                                          int64_t keep, const WordListEntry* after,
                                          WordListStats* stats, int64_t chunk_entries,
                                          const std::unordered_set<uint64_t>* taken) {
  Best best(keep);
  Chunk chunk(corpus);
  LineReader reader(path);
  std::string line;
  std::vector<std::string> words;
  while (reader.next(&line)) {
    ++stats->lines;
    const auto control = std::find_if(line.begin(), line.end(), [](char c) {
      return static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\r';
    });
    MOWE_REQUIRE(control == line.end(),
                 "data.routing_word_list {}: line {} holds the control byte 0x{:02x}: a binary "
                 "file, not a word list (UTF-8 text, one word or name per line)",
                 path, stats->lines, static_cast<unsigned>(static_cast<unsigned char>(*control)));
    MOWE_REQUIRE(line.size() <= kMaxWordListLineBytes,
                 "data.routing_word_list {}: line {} has {} bytes, more than the {} a word list "
                 "line may have (one word or name of at most {} words, a TAB and a frequency): "
                 "is it a word list?",
                 path, stats->lines, line.size(), kMaxWordListLineBytes, kMaxWords);
    WordListEntry e;
    if (!parse_word_list_line(line, &e, stats)) continue;
    e.line = stats->lines;
    words.clear();
    for_each_word(e.text, [&](std::string_view w) { words.emplace_back(w); });
    if (static_cast<int>(words.size()) > kMaxWords) {
      ++stats->too_many_words;
      continue;
    }
    ++stats->entries;
    chunk.add(std::move(e), words);
    if (chunk.size() >= chunk_entries) chunk.finish(after, taken, &best, stats);
  }
  chunk.finish(after, taken, &best, stats);
  return best.take();
}

}  // namespace mowe::data
