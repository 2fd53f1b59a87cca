// Streaming corpora (data.streaming): TEXT or JSONL files read while training, never tokenized
// up front and never read whole by every rank.
//
// The files are dealt to S streams (file f to stream f mod S). A stream visits its files in a
// seeded order per epoch, reads their documents in file order, tokenizes each and appends EOS,
// and cuts the concatenation into chunks of the pre-corruption length. Row j of every global
// batch of G rows belongs to stream floor(j S / G); the rows of a stream take its chunks in order.
// So the global batch depends on (files, S, G, seed) and not on the world size: rank r reads only
// the streams of its rows (a stream whose rows straddle two ranks is read by both, each keeping
// its rows). Span corruption of global example g is seeded with g, as for in-memory corpora.
//
// The position of every stream at a step boundary (epoch, file, byte offset of a document, token
// inside it, chunks read) is the loader state: a rank saves the streams it reads, a checkpoint
// merges all ranks' (every stream is at the same place on every rank that reads it), and a job of
// any world size resumes by seeking each of its streams there.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/document_reader.h"
#include "data/example_source.h"
#include "data/tokenizer.h"
#include "runtime/proto/config.pb.h"

namespace mowe::data {

struct StreamingCorpus {
  std::vector<std::string> files;  // sorted, as resolve_corpus_files gives them
  DocumentReader::Format format = DocumentReader::Format::kJsonl;
  std::string text_field = "text";
  std::shared_ptr<const Tokenizer> tokenizer;
  int64_t num_streams = 1;
  uint64_t hash = 0;  // files (names and sizes), format, field, tokenizer and streams
};

// The streaming corpus of data.corpus_path for a global batch of `global_batch_size` rows.
// Throws naming the field when data.stream_shards does not fit the files or the batch.
StreamingCorpus open_streaming_corpus(const config::Config& config,
                                      std::shared_ptr<const Tokenizer> tokenizer);

// The rows [first_row(s), first_row(s + 1)) of every global batch that stream s fills.
inline int64_t stream_first_row(int64_t stream, int64_t streams, int64_t global_batch) {
  return (stream * global_batch + streams - 1) / streams;
}
inline int64_t stream_of_row(int64_t row, int64_t streams, int64_t global_batch) {
  return row * streams / global_batch;
}

// One stream's documents as chunks of tokens, read forward.
class StreamReader {
 public:
  StreamReader(std::shared_ptr<const StreamingCorpus> corpus, int64_t stream, uint64_t seed);

  // The next chunk of `length` tokens into *chunk.
  void next_chunk(int64_t length, std::vector<int32_t>* chunk);
  // Where the next chunk starts.
  StreamPosition position() const;
  // Continues at a position this stream's position() gave (in this or an earlier process).
  void seek(const StreamPosition& position);
  int64_t chunks_read() const { return chunk_; }

 private:
  // The index into corpus files of the file at `pos` of the epoch's order.
  int64_t file_at(int64_t epoch, int64_t pos) const;
  void open_file();
  // Loads the next document's tokens (with EOS); moves through files and epochs.
  void next_document();

  std::shared_ptr<const StreamingCorpus> corpus_;
  int64_t stream_;
  uint64_t seed_;
  std::vector<int64_t> files_;  // this stream's files, indices into corpus_->files
  int64_t epoch_ = 0, file_ = 0;
  std::unique_ptr<DocumentReader> reader_;
  int64_t documents_this_epoch_ = 0;
  int64_t doc_offset_ = 0;  // where the current document starts in the current file
  std::vector<int32_t> doc_tokens_;
  int64_t doc_pos_ = 0;  // tokens of the current document already in chunks
  int64_t chunk_ = 0;
  std::string text_;
};

// The loader's example source over a streaming corpus, for one rank.
std::unique_ptr<ExampleSource> make_streaming_source(std::shared_ptr<const StreamingCorpus> corpus,
                                                     const LoaderOptions& options,
                                                     const SpanLengths& lengths,
                                                     int64_t target_length);

}  // namespace mowe::data
