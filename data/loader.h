// The deterministic, sharded, resumable loader. The global batch of step s holds the examples
// [e_s, e_s + B) of its example source (e_s = s * B unless the batch size changed on restore), and
// rank r of N takes the contiguous slice [r * B/N, (r + 1) * B/N) of it. Example g is a pure
// function of (seed, g). Three sources (data.task, data.corpus):
// - span corruption of a token stream: g's chunk comes from TokenStream::example, its noise mask
//   is seeded with hash(seed, g);
// - span corruption of SYNTHETIC tokens (SyntheticExamples), likewise, with routing ids drawn by
//   the source instead of the routing tokenizer;
// - question-answer pairs (QaExamples): g's pair comes from QaExamples::pair_of, cut to the
//   lengths keeping EOS.
// So 1 rank and N ranks see the same global batch, thread timing never matters, and the state to
// save is just (step, e_s) with the source's fingerprint.
//
// A background thread builds the next prefetch_batches batches (span corruption, routing ids,
// padding, masks) while the trainer works; next() hands them over in order.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "data/batch.h"
#include "data/proto/loader_state.pb.h"
#include "data/qa.h"
#include "data/routing_tokenizer.h"
#include "data/span_corruption.h"
#include "data/synthetic.h"
#include "data/token_stream.h"

namespace mowe::data {

class ExampleSource;
struct StreamingCorpus;

class Loader {
 public:
  // Span corruption of `stream`. Throws when global_batch_size is not a multiple of world_size,
  // when the configured target length is below the derived one, or when the stream holds less
  // than one example.
  Loader(std::shared_ptr<const TokenStream> stream, std::shared_ptr<const RoutingTokenizer> table,
         LoaderOptions options);
  // Question-answer pairs, padded to input_length and target_length (which must be set: there is
  // no length to derive). Throws when target_length is 0 or there is no pair.
  Loader(std::shared_ptr<const QaExamples> pairs, std::shared_ptr<const RoutingTokenizer> table,
         LoaderOptions options);
  // Span corruption of synthetic tokens, with synthetic routing ids (data.corpus SYNTHETIC);
  // the table is not used. Same checks as for a token stream.
  Loader(std::shared_ptr<const SyntheticExamples> synthetic,
         std::shared_ptr<const RoutingTokenizer> table, LoaderOptions options);
  // Span corruption of a streaming corpus (data.streaming), read forward: batches come only from
  // next(), and the state holds the position of every stream this rank reads.
  Loader(std::shared_ptr<const StreamingCorpus> corpus,
         std::shared_ptr<const RoutingTokenizer> table, LoaderOptions options);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  // The next batch in step order (blocks until the background thread has built it). It stays
  // valid until the following call: its storage is then reused for a later batch, so that a
  // steady-state step allocates nothing.
  const Batch& next();
  // Where next() continues; restore() refuses a state from another stream or seed.
  // Streaming: only this rank's streams; a checkpoint merges all ranks' (see stream_source.h).
  LoaderState state() const;
  void restore(const LoaderState& state);

  // Built on the calling thread, without touching the position: tests, evaluation.
  Batch batch_at(int64_t step, int64_t first_global_example) const;
  Example example(int64_t global_index) const;
  // The same into existing storage (vectors keep their capacity).
  void batch_into(int64_t step, int64_t first_global_example, Batch* batch) const;
  void example_into(int64_t global_index, Example* example) const;

  // Span corruption's lengths (all 0 for question-answer pairs).
  const SpanLengths& lengths() const { return lengths_; }
  int64_t target_length() const { return target_length_; }
  int64_t local_batch_size() const { return local_batch_; }
  bool streaming() const;
  const LoaderOptions& options() const { return options_; }

 private:
  // The checks and lengths every source shares.
  Loader(std::shared_ptr<const RoutingTokenizer> table, LoaderOptions options);
  // The batch or example from the source, whatever its kind (the prefetch thread's way in).
  void build_batch(int64_t step, int64_t first_global_example, Batch* batch) const;
  void example_from_source(int64_t global_index, Example* example) const;
  // Span corruption's lengths and checks; throws naming the setting that does not fit.
  void set_span_lengths();
  void start();
  void stop();
  void produce();

  std::unique_ptr<ExampleSource> source_;
  std::shared_ptr<const RoutingTokenizer> table_;
  LoaderOptions options_;
  SpanLengths lengths_;
  int64_t target_length_ = 0;
  int64_t local_batch_ = 0;

  // Position of the batch next() returns, and of the one the thread builds next.
  int64_t step_ = 0, example_ = 0;
  int64_t produce_step_ = 0, produce_example_ = 0;

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  // A ring of prefetch_batches + 1 batches: count_ ready ones from head_, the one next() handed
  // out last just before head_, and the producer filling the slot after the ready ones.
  std::vector<Batch> slots_;
  // Streaming: the stream positions after each slot's batch, and after the one next() handed out
  // last (those of the state).
  std::vector<std::vector<StreamPosition>> slot_positions_;
  std::vector<StreamPosition> positions_;
  size_t head_ = 0, count_ = 0;
  std::exception_ptr error_;
  bool stopping_ = false;
  std::thread thread_;
};

// Occurrences of every routing id (size num_routing_ids) in the encoder and decoder inputs of the
// examples [0, num_examples), positions with routing id -1 (padding, pad, EOS, sentinels)
// excluded: the load each id puts on its expert in training. The routing vocabulary's
// frequencies are counted on raw text instead (count_routing_ids in routing_vocab.h).
std::vector<int64_t> count_routing_ids(const Loader& loader, int64_t num_examples,
                                       int32_t num_routing_ids);

}  // namespace mowe::data
