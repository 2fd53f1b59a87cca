// Word or entity-name lists for the routing vocabulary (data.routing_word_list): one entry per
// line, UTF-8, optionally followed by a TAB and a non-negative integer frequency; plain, .gz or
// .zst. Lists run to tens of millions of lines, so they are streamed, never held: the list is
// read in chunks of entries, each chunk's entries are counted in the training corpus in one pass
// over it, and only the best `keep` entries seen so far stay in memory (a bounded heap).
//
// An entry's corpus count is the number of times its words (for_each_word: lower-cased, split
// on everything but letters and digits) occur in a row in a training document, so the count is
// case-insensitive and "Alan Turing" also counts "alan turing" and "ALAN TURING" (which the case
// variants route to the same id). Entries are ranked by corpus count, then by the list's
// frequency, then by line: the frequency column orders the entries the corpus does not contain,
// and breaks ties among those it does.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace mowe::data {

struct WordListEntry {
  std::string text;            // the entry, white space trimmed and runs of it made one space
  int64_t corpus_count = 0;    // occurrences of its words in a row in the training documents
  int64_t list_frequency = 0;  // the frequency column, 0 when absent
  int64_t line = 0;            // 1-based line in the list
};

// The longest line a word list may have: an entry is a word or a name of at most 9 words, so a
// longer line means a file that is not a word list (read whole, it would exhaust memory).
inline constexpr size_t kMaxWordListLineBytes = size_t{64} << 10;

// A 64-bit hash of an entry's text: entries are kept one per text (two texts sharing a hash,
// odds about n^2 / 2^64, would be taken for one).
uint64_t entry_key(std::string_view text);

// True when a ranks before b: more corpus occurrences, then a higher list frequency, then an
// earlier line.
bool ranks_before(const WordListEntry& a, const WordListEntry& b);

struct WordListStats {
  int64_t lines = 0;           // lines read
  int64_t invalid_utf8 = 0;    // skipped: not valid UTF-8
  int64_t malformed = 0;       // skipped: empty entry, or a frequency that is not an integer >= 0
  int64_t too_many_words = 0;  // skipped: more words than a routing key has pieces (9)
  int64_t entries = 0;         // the rest: the candidates
  int64_t duplicates = 0;      // candidates not ranked: the same text as a better-ranked one
  int64_t in_corpus = 0;       // candidates that occur in the training documents
};

// Parses one line of a list. Returns false (and counts why in *stats) for a line to skip.
bool parse_word_list_line(std::string_view line, WordListEntry* entry, WordListStats* stats);

// The training documents as sequences of word ids (for_each_word), for counting word sequences.
class CorpusWords {
 public:
  explicit CorpusWords(const std::vector<std::string>& documents);
  // The id of a (lower-case) word, or -1 when the corpus does not contain it.
  int32_t id(std::string_view word) const;
  size_t num_words() const { return ids_.size(); }  // distinct words
  // Word ids, documents separated by -1.
  const std::vector<int32_t>& stream() const { return stream_; }
  int64_t bytes() const;

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, int32_t, Hash, std::equal_to<>> ids_;
  std::vector<int32_t> stream_;
};

// Streams the list at `path` and returns, best first, the `keep` best entries that rank after
// `*after` (all entries when `after` is null), one per text (its best-ranked line), leaving out
// the texts whose entry_key is in `taken` (those an earlier pass returned), each with its corpus
// count. So however often the list repeats an entry, one pass returns `keep` distinct texts.
// Counts every line in *stats (so pass a fresh one per pass). `chunk_entries` bounds the entries
// counted at a time. Throws mowe::Error naming the file when it cannot be read, and a UserError
// naming the file and the line for a line over kMaxWordListLineBytes.
std::vector<WordListEntry> rank_word_list(const std::string& path, const CorpusWords& corpus,
                                          int64_t keep, const WordListEntry* after,
                                          WordListStats* stats,
                                          int64_t chunk_entries = int64_t{1} << 20,
                                          const std::unordered_set<uint64_t>* taken = nullptr);

}  // namespace mowe::data
