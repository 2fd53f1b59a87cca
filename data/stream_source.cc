#include "data/stream_source.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <filesystem>
#include <functional>
#include <mutex>
#include <thread>

#include "runtime/hash.h"
#include "data/token_stream.h"
#include "runtime/check.h"

namespace mowe::data {

StreamingCorpus open_streaming_corpus(const config::Config& config,
                                      std::shared_ptr<const Tokenizer> tokenizer) {
  const config::DataConfig& d = config.data();
  StreamingCorpus c;
  c.files = resolve_corpus_files(d.corpus_path(), "data.corpus_path");
  c.format = d.corpus() == config::DataConfig::TEXT ? DocumentReader::Format::kText
                                                    : DocumentReader::Format::kJsonl;
  c.text_field = d.jsonl_text_field();
  c.tokenizer = std::move(tokenizer);
  const int64_t files = static_cast<int64_t>(c.files.size());
  const int64_t batch = config.training().global_batch_size();
  c.num_streams = d.stream_shards() > 0 ? d.stream_shards() : std::min(files, batch);
  if (c.num_streams > files)
    throw Error(fmt::format(
        "data.stream_shards = {} but data.corpus_path = \"{}\" names {} files: every stream "
        "reads files of its own, so split the corpus into at least {} files or lower "
        "data.stream_shards",
        c.num_streams, d.corpus_path(), files, c.num_streams));
  if (c.num_streams > batch)
    throw Error(fmt::format(
        "data.stream_shards = {} exceeds training.global_batch_size = {}: every stream fills at "
        "least one row of each batch",
        c.num_streams, batch));
  uint64_t h = hash_ints(0x57e4, static_cast<uint64_t>(c.num_streams),
                         static_cast<uint64_t>(c.format), c.tokenizer->hash());
  h = hash_bytes(c.text_field, h);
  // By file name and size, not directory: the shards may move (another mount point on the
  // cluster that resumes) without becoming other data.
  for (const std::string& f : c.files) {
    std::error_code ec;
    const auto size = std::filesystem::file_size(f, ec);
    h = hash_ints(hash_bytes(std::filesystem::path(f).filename().string(), h),
                  ec ? 0 : static_cast<uint64_t>(size));
  }
  c.hash = h;
  return c;
}

StreamReader::StreamReader(std::shared_ptr<const StreamingCorpus> corpus, int64_t stream,
                           uint64_t seed)
    : corpus_(std::move(corpus)), stream_(stream), seed_(seed) {
  const int64_t n = static_cast<int64_t>(corpus_->files.size());
  for (int64_t f = stream; f < n; f += corpus_->num_streams) files_.push_back(f);
  MOWE_CHECK(!files_.empty(), "stream {} of {} has no file", stream, corpus_->num_streams);
}

int64_t StreamReader::file_at(int64_t epoch, int64_t pos) const {
  const uint64_t key =
      hash_ints(seed_, 0x5f11e5, static_cast<uint64_t>(stream_), static_cast<uint64_t>(epoch));
  const uint64_t n = files_.size();
  return files_[permute_index(static_cast<uint64_t>(pos), n, key)];
}

void StreamReader::open_file() {
  reader_ = std::make_unique<DocumentReader>(corpus_->files[file_at(epoch_, file_)],
                                             corpus_->format, corpus_->text_field);
}

void StreamReader::next_document() {
  for (;;) {
    if (!reader_) open_file();
    doc_offset_ = reader_->offset();
    if (reader_->next(&text_)) {
      doc_tokens_.clear();
      corpus_->tokenizer->encode(text_, &doc_tokens_);
      doc_tokens_.push_back(Tokenizer::kEosId);
      doc_pos_ = 0;
      ++documents_this_epoch_;
      return;
    }
    const CorpusStats& s = reader_->stats();
    if (s.skipped_invalid_utf8 > 0 || s.skipped_malformed > 0)
      spdlog::warn(
          "[data] {}: skipped {} lines that are not valid UTF-8 and {} malformed lines of {}",
          reader_->path(), s.skipped_invalid_utf8, s.skipped_malformed, s.lines);
    reader_.reset();
    if (++file_ < static_cast<int64_t>(files_.size())) continue;
    if (documents_this_epoch_ == 0) {
      std::string names;
      for (int64_t f : files_) names += (names.empty() ? "" : ", ") + corpus_->files[f];
      throw Error(
          fmt::format("stream {} of the streaming corpus holds no document: its files ({}) "
                      "are empty or hold no valid line",
                      stream_, names));
    }
    file_ = 0;
    ++epoch_;
    documents_this_epoch_ = 0;
  }
}

void StreamReader::next_chunk(int64_t length, std::vector<int32_t>* chunk) {
  chunk->clear();
  while (static_cast<int64_t>(chunk->size()) < length) {
    if (doc_pos_ == static_cast<int64_t>(doc_tokens_.size())) next_document();
    const int64_t take = std::min<int64_t>(length - static_cast<int64_t>(chunk->size()),
                                           static_cast<int64_t>(doc_tokens_.size()) - doc_pos_);
    chunk->insert(chunk->end(), doc_tokens_.begin() + doc_pos_,
                  doc_tokens_.begin() + doc_pos_ + take);
    doc_pos_ += take;
  }
  ++chunk_;
}

StreamPosition StreamReader::position() const {
  StreamPosition p;
  p.set_stream(stream_);
  p.set_epoch(epoch_);
  p.set_file(file_);
  p.set_chunk(chunk_);
  if (doc_pos_ < static_cast<int64_t>(doc_tokens_.size())) {
    p.set_offset(doc_offset_);
    p.set_token(doc_pos_);
  } else {  // the current document is used up: continue after it
    p.set_offset(reader_ ? reader_->offset() : 0);
    p.set_token(0);
  }
  return p;
}

void StreamReader::seek(const StreamPosition& p) {
  MOWE_CHECK(p.stream() == stream_, "position of stream {} given to stream {}", p.stream(),
             stream_);
  if (p.epoch() < 0 || p.file() < 0 || p.file() >= static_cast<int64_t>(files_.size()) ||
      p.offset() < 0 || p.token() < 0 || p.chunk() < 0)
    throw Error(
        fmt::format("the saved position of stream {} (epoch {}, file {} of {}, offset {}, "
                    "token {}) does not fit this corpus: resume with the files it was "
                    "trained on",
                    stream_, p.epoch(), p.file(), files_.size(), p.offset(), p.token()));
  epoch_ = p.epoch();
  file_ = p.file();
  chunk_ = p.chunk();
  // Only tells an empty stream apart: one that has given chunks has documents in every epoch.
  documents_this_epoch_ = p.chunk() > 0 ? 1 : 0;
  open_file();
  reader_->skip_to(p.offset());
  doc_tokens_.clear();
  doc_pos_ = 0;
  if (p.token() > 0) {
    next_document();
    if (p.token() >= static_cast<int64_t>(doc_tokens_.size()))
      throw Error(fmt::format(
          "{}: the document at offset {} has {} tokens, but the saved "
          "position is token {} of it: the file or the tokenizer changed",
          corpus_->files[file_at(epoch_, file_)], p.offset(), doc_tokens_.size(), p.token()));
    doc_pos_ = p.token();
  }
}

namespace {

// Runs task(0..n-1) on `threads` threads (the caller's included) and waits; rethrows the first
// error. Workers live as long as the pool, so a step starts no thread.
// Not runtime/cpu's pool: that one serves the training step on the main thread at the same time
// as this one reads streams on the loader's thread, and it is not meant for two callers at once.
class StreamWorkers {
 public:
  explicit StreamWorkers(int threads) {
    for (int t = 1; t < threads; ++t) workers_.emplace_back([this] { work(); });
  }
  ~StreamWorkers() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (std::thread& t : workers_) t.join();
  }

  void run(int n, const std::function<void(int)>& task) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      task_ = &task, n_ = n, next_ = 0, done_ = 0, error_ = nullptr;
      ++generation_;
    }
    wake_.notify_all();
    drain();
    std::unique_lock<std::mutex> lock(mutex_);
    finished_.wait(lock, [&] { return done_ == n_; });
    task_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void work() {
    uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
        if (stopping_) return;
        seen = generation_;
      }
      drain();
    }
  }
  // Takes tasks until none is left.
  void drain() {
    for (;;) {
      int i;
      const std::function<void(int)>* task;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (task_ == nullptr || next_ >= n_) return;
        i = next_++;
        task = task_;
      }
      try {
        (*task)(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!error_) error_ = std::current_exception();
      }
      std::lock_guard<std::mutex> lock(mutex_);
      if (++done_ == n_) finished_.notify_all();
    }
  }

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_, finished_;
  const std::function<void(int)>* task_ = nullptr;
  int n_ = 0, next_ = 0, done_ = 0;
  uint64_t generation_ = 0;
  bool stopping_ = false;
  std::exception_ptr error_;
};

class StreamingSource : public ExampleSource {
 public:
  StreamingSource(std::shared_ptr<const StreamingCorpus> corpus, const LoaderOptions& options,
                  const SpanLengths& lengths, int64_t target_length)
      : corpus_(std::move(corpus)),
        options_(options),
        lengths_(lengths),
        target_length_(target_length) {
    const int64_t G = options.global_batch_size, S = corpus_->num_streams;
    const int64_t B = G / options.world_size;
    const int64_t rank_first = options.rank * B, rank_end = rank_first + B;
    first_stream_ = stream_of_row(rank_first, S, G);
    const int64_t last = stream_of_row(rank_end - 1, S, G);
    for (int64_t s = first_stream_; s <= last; ++s) {
      Held h{.reader = StreamReader(corpus_, s, options.seed), .chunks = {}};
      h.first_row = stream_first_row(s, S, G);
      h.rows = stream_first_row(s + 1, S, G) - h.first_row;
      h.mine_first = std::max(h.first_row, rank_first);
      h.mine = std::min(h.first_row + h.rows, rank_end) - h.mine_first;
      h.chunks.resize(static_cast<size_t>(h.mine));
      held_.push_back(std::move(h));
    }
    const int threads = options.loader_threads > 0
                            ? options.loader_threads
                            : static_cast<int>(std::min<size_t>(held_.size(), 4));
    workers_ = std::make_unique<StreamWorkers>(
        static_cast<int>(std::min<size_t>(held_.size(), static_cast<size_t>(threads))));
    if (S < options.world_size)
      spdlog::warn(
          "[data] {} streams for {} ranks: several ranks read each stream and keep only their "
          "rows; split the corpus into at least {} files and set data.stream_shards for each "
          "rank to read files of its own",
          S, options.world_size, options.world_size);
  }

  void make(int64_t g, std::vector<int32_t>* inputs, std::vector<int32_t>* targets) const override {
    const int64_t G = options_.global_batch_size, S = corpus_->num_streams;
    const int64_t step = g / G, row = g % G;
    if (step != read_step_) read_step(step, g);
    const Held& h = held_[static_cast<size_t>(stream_of_row(row, S, G) - first_stream_)];
    const std::vector<int32_t>& chunk = h.chunks[static_cast<size_t>(row - h.mine_first)];
    corrupt_chunk(chunk.data(), g, options_, lengths_, target_length_, inputs, targets);
  }

  uint64_t hash() const override { return corpus_->hash; }
  bool streaming() const override { return true; }

  void positions(std::vector<StreamPosition>* out) const override {
    out->resize(held_.size());
    for (size_t i = 0; i < held_.size(); ++i) (*out)[i] = held_[i].reader.position();
  }

  void describe(LoaderState* state) const override {
    state->set_global_batch_size(options_.global_batch_size);
    state->set_num_streams(corpus_->num_streams);
    state->set_num_files(static_cast<int64_t>(corpus_->files.size()));
  }

  std::string mismatch(const LoaderState& s) const override {
    const int64_t G = options_.global_batch_size, S = corpus_->num_streams;
    const int64_t files = static_cast<int64_t>(corpus_->files.size());
    if (s.streams_size() == 0)
      return "the saved loader state is not a streaming corpus's (data.streaming was off): "
             "resume with the data settings it was trained with";
    if (s.global_batch_size() != G)
      return fmt::format(
          "the saved streaming loader state was counted with training.global_batch_size = {}, "
          "this job has {}: a streaming corpus cannot change its batch size on resume",
          s.global_batch_size(), G);
    if (s.num_streams() != S)
      return fmt::format(
          "the saved streaming loader state has {} streams, this job has {} (data.stream_shards, "
          "or its default from the number of files and the batch size): resume with the same "
          "stream count",
          s.num_streams(), S);
    if (s.num_files() != files)
      return fmt::format(
          "the saved streaming loader state read {} corpus files, data.corpus_path now names {}: "
          "resume with the files it was trained on",
          s.num_files(), files);
    if (s.stream_hash() != corpus_->hash)
      return "the corpus files differ from the saved loader state's (names, sizes or order), or "
             "the tokenizer does: resume with the files and tokenizer it was trained on";
    return "";
  }

  void seek(const LoaderState& state) override {
    const int64_t S = corpus_->num_streams;
    for (Held& h : held_) {
      const int64_t s = first_stream_ + (&h - held_.data());
      const StreamPosition* found = nullptr;
      for (const StreamPosition& p : state.streams())
        if (p.stream() == s) found = &p;
      if (found == nullptr)
        throw Error(
            fmt::format("the saved loader state has no position for stream {} of {}", s, S));
      if (found->chunk() != state.step() * h.rows)
        throw Error(
            fmt::format("the saved position of stream {} is after {} chunks, but step {} "
                        "starts at chunk {}",
                        s, found->chunk(), state.step(), state.step() * h.rows));
      h.reader.seek(*found);
    }
    read_step_ = -1;
  }

 private:
  // A stream this rank reads: its rows of every global batch, this rank's part of them, and the
  // chunks of those for the step being built.
  struct Held {
    StreamReader reader;
    int64_t first_row = 0, rows = 0;   // the stream's rows of the global batch
    int64_t mine_first = 0, mine = 0;  // this rank's part of them
    std::vector<std::vector<int32_t>> chunks;
  };

  // Reads every held stream's chunks of `step` (this rank's into the cache, the others' skipped)
  // up to the step boundary, one thread per stream at a time.
  void read_step(int64_t step, int64_t g) const {
    for (const Held& h : held_)
      if (h.reader.chunks_read() != step * h.rows)
        throw Error(fmt::format(
            "a streaming corpus is read forward only: example {} is in step {}, but stream {} "
            "has read {} chunks, not the {} before that step (batches of a streaming loader "
            "come only from next())",
            g, step, first_stream_ + (&h - held_.data()), h.reader.chunks_read(), step * h.rows));
    const std::function<void(int)> task = [&](int i) {
      Held& h = held_[static_cast<size_t>(i)];
      thread_local std::vector<int32_t> skipped;
      for (int64_t r = h.first_row; r < h.first_row + h.rows; ++r) {
        const bool mine = r >= h.mine_first && r < h.mine_first + h.mine;
        h.reader.next_chunk(lengths_.tokens_length,
                            mine ? &h.chunks[static_cast<size_t>(r - h.mine_first)] : &skipped);
      }
    };
    workers_->run(static_cast<int>(held_.size()), task);
    read_step_ = step;
  }

  std::shared_ptr<const StreamingCorpus> corpus_;
  const LoaderOptions& options_;  // the loader's, which outlives its source
  SpanLengths lengths_;
  int64_t target_length_;
  int64_t first_stream_ = 0;
  // Only the loader's building thread reads the streams (make is const for the other sources'
  // sake, which are pure functions of the example index).
  mutable std::vector<Held> held_;
  mutable int64_t read_step_ = -1;
  std::unique_ptr<StreamWorkers> workers_;
};

}  // namespace

std::unique_ptr<ExampleSource> make_streaming_source(std::shared_ptr<const StreamingCorpus> corpus,
                                                     const LoaderOptions& options,
                                                     const SpanLengths& lengths,
                                                     int64_t target_length) {
  return std::make_unique<StreamingSource>(std::move(corpus), options, lengths, target_length);
}

}  // namespace mowe::data
