#include "data/loader.h"

#include <algorithm>

#include "data/example_source.h"
#include "data/stream_source.h"
#include "runtime/check.h"
#include "runtime/hash.h"

namespace mowe::data {

namespace {

// T5 span corruption of a token stream's chunks.
class SpanCorruptionSource : public ExampleSource {
 public:
  SpanCorruptionSource(std::shared_ptr<const TokenStream> stream, const LoaderOptions& options,
                       const SpanLengths& lengths, int64_t target_length)
      : stream_(std::move(stream)),
        options_(options),
        lengths_(lengths),
        target_length_(target_length) {}

  void make(int64_t g, std::vector<int32_t>* inputs, std::vector<int32_t>* targets) const override {
    corrupt_chunk(stream_->example(g, lengths_.tokens_length).data(), g, options_, lengths_,
                  target_length_, inputs, targets);
  }
  uint64_t hash() const override { return stream_->hash(); }

 private:
  std::shared_ptr<const TokenStream> stream_;
  const LoaderOptions& options_;  // the loader's, which outlives its source
  SpanLengths lengths_;
  int64_t target_length_;
};

// T5 span corruption of synthetic tokens; the routing ids are drawn, not looked up.
class SyntheticSource : public ExampleSource {
 public:
  SyntheticSource(std::shared_ptr<const SyntheticExamples> examples, const LoaderOptions& options,
                  const SpanLengths& lengths, int64_t target_length)
      : examples_(std::move(examples)),
        options_(options),
        lengths_(lengths),
        target_length_(target_length) {}

  void make(int64_t g, std::vector<int32_t>* inputs, std::vector<int32_t>* targets) const override {
    thread_local std::vector<int32_t> chunk;  // reused: building a batch allocates nothing
    examples_->tokens(g, lengths_.tokens_length, &chunk);
    corrupt_chunk(chunk.data(), g, options_, lengths_, target_length_, inputs, targets);
  }
  uint64_t hash() const override { return examples_->hash(); }
  void not_routed(const std::vector<int32_t>& tokens, std::vector<int32_t>* routing) const {
    const LoaderOptions& o = options_;
    for (size_t i = 0; i < tokens.size(); ++i) {
      const int32_t t = tokens[i];
      if (t == o.pad_id || t == o.eos_id ||
          std::find(o.sentinels.begin(), o.sentinels.end(), t) != o.sentinels.end())
        (*routing)[i] = RoutingTokenizer::kNotRouted;
    }
  }
  bool route(int64_t g, Example* ex) const override {
    ex->input_routing.resize(ex->inputs.size());
    ex->decoder_routing.resize(ex->decoder_inputs.size());
    examples_->routing_ids(g, 0, static_cast<int64_t>(ex->input_routing.size()),
                           ex->input_routing.data());
    examples_->routing_ids(g, 1, static_cast<int64_t>(ex->decoder_routing.size()),
                           ex->decoder_routing.data());
    // As with text, pad (the decoder's start), EOS and the sentinels reach no expert: the drawn
    // ids follow their law over the word positions, and the expert load matches real data's.
    not_routed(ex->inputs, &ex->input_routing);
    not_routed(ex->decoder_inputs, &ex->decoder_routing);
    return true;
  }

 private:
  std::shared_ptr<const SyntheticExamples> examples_;
  const LoaderOptions& options_;  // the loader's, which outlives its source
  SpanLengths lengths_;
  int64_t target_length_;
};

// Appends EOS to `ids` cut to at most `length` tokens in all: the EOS always survives, so the
// model still learns where a question and an answer end.
void cut_with_eos(const std::vector<int32_t>& ids, int64_t length, int32_t eos,
                  std::vector<int32_t>* out) {
  const int64_t keep = std::min<int64_t>(static_cast<int64_t>(ids.size()), length - 1);
  out->assign(ids.begin(), ids.begin() + keep);
  out->push_back(eos);
}

class QaSource : public ExampleSource {
 public:
  QaSource(std::shared_ptr<const QaExamples> pairs, const LoaderOptions& options,
           int64_t target_length)
      : pairs_(std::move(pairs)), options_(options), target_length_(target_length) {}

  void make(int64_t g, std::vector<int32_t>* inputs, std::vector<int32_t>* targets) const override {
    const int64_t i = pairs_->pair_of(g);
    cut_with_eos(pairs_->inputs(i), options_.input_length, options_.eos_id, inputs);
    cut_with_eos(pairs_->targets(i), target_length_, options_.eos_id, targets);
  }
  uint64_t hash() const override { return pairs_->hash(); }

 private:
  std::shared_ptr<const QaExamples> pairs_;
  const LoaderOptions& options_;
  int64_t target_length_;
};

}  // namespace

Loader::Loader(std::shared_ptr<const RoutingTokenizer> table, LoaderOptions options)
    : table_(std::move(table)), options_(std::move(options)) {
  const LoaderOptions& o = options_;
  MOWE_CHECK(table_, "the loader needs a routing table");
  MOWE_CHECK(o.world_size > 0 && o.rank >= 0 && o.rank < o.world_size, "rank {} of {} ranks",
             o.rank, o.world_size);
  MOWE_REQUIRE(o.global_batch_size > 0 && o.global_batch_size % o.world_size == 0,
               "training.global_batch_size = {} is not a multiple of the {} ranks: every rank "
               "takes the same number of examples, so choose a multiple of the world size",
               o.global_batch_size, o.world_size);
  MOWE_CHECK(o.prefetch_batches >= 1, "prefetch_batches = {} must be >= 1", o.prefetch_batches);
  local_batch_ = o.global_batch_size / o.world_size;
}

void Loader::set_span_lengths() {
  const LoaderOptions& o = options_;
  lengths_ = t5_span_lengths(o.input_length, o.noise_density, o.mean_noise_span_length);
  target_length_ = o.target_length > 0 ? o.target_length : lengths_.targets_length;
  // User errors (settings that do not fit the data or the tokenizer): one line, no source path.
  if (target_length_ < lengths_.targets_length)
    throw Error(fmt::format(
        "data.target_length = {} is too short: span corruption of {} tokens at noise density {} "
        "makes {} targets (0 derives it)",
        o.target_length, lengths_.tokens_length, o.noise_density, lengths_.targets_length));
  if (static_cast<int64_t>(o.sentinels.size()) < lengths_.noise_spans)
    throw Error(fmt::format(
        "span corruption makes {} spans per example but the tokenizer has {} sentinels: raise "
        "data.num_sentinels and retrain the tokenizer",
        lengths_.noise_spans, o.sentinels.size()));
}

Loader::Loader(std::shared_ptr<const TokenStream> stream,
               std::shared_ptr<const RoutingTokenizer> table, LoaderOptions options)
    : Loader(std::move(table), std::move(options)) {
  MOWE_CHECK(stream, "the loader needs a token stream");
  set_span_lengths();
  if (stream->num_chunks(lengths_.tokens_length) == 0)
    throw Error(fmt::format(
        "the token stream has {} tokens, fewer than one example of {}: use a larger corpus or a "
        "smaller data.input_length",
        stream->size(), lengths_.tokens_length));
  source_ =
      std::make_unique<SpanCorruptionSource>(std::move(stream), options_, lengths_, target_length_);
}

Loader::Loader(std::shared_ptr<const SyntheticExamples> synthetic,
               std::shared_ptr<const RoutingTokenizer> table, LoaderOptions options)
    : Loader(std::move(table), std::move(options)) {
  MOWE_CHECK(synthetic, "the loader needs synthetic examples");
  set_span_lengths();
  source_ =
      std::make_unique<SyntheticSource>(std::move(synthetic), options_, lengths_, target_length_);
}

Loader::Loader(std::shared_ptr<const StreamingCorpus> corpus,
               std::shared_ptr<const RoutingTokenizer> table, LoaderOptions options)
    : Loader(std::move(table), std::move(options)) {
  MOWE_CHECK(corpus, "the loader needs a streaming corpus");
  set_span_lengths();
  source_ = make_streaming_source(std::move(corpus), options_, lengths_, target_length_);
  source_->positions(&positions_);
}

Loader::Loader(std::shared_ptr<const QaExamples> pairs,
               std::shared_ptr<const RoutingTokenizer> table, LoaderOptions options)
    : Loader(std::move(table), std::move(options)) {
  MOWE_CHECK(pairs, "the loader needs question-answer pairs");
  if (options_.target_length <= 0)
    throw Error(
        "data.target_length is 0, but question-answer examples have no length to derive it "
        "from: set it to the longest answer in tokens plus EOS (e.g. 8)");
  if (options_.input_length < 2 || options_.target_length < 2)
    throw Error(fmt::format(
        "data.input_length = {} and data.target_length = {} leave no room for a question or an "
        "answer besides EOS: set both to at least 2",
        options_.input_length, options_.target_length));
  if (pairs->size() == 0)
    throw Error("there is no question-answer pair to load (no synset with a gloss in this split)");
  target_length_ = options_.target_length;
  source_ = std::make_unique<QaSource>(std::move(pairs), options_, target_length_);
}

Loader::~Loader() {
  stop();
}

bool Loader::streaming() const {
  return source_->streaming();
}

Example Loader::example(int64_t global_index) const {
  Example ex;
  example_into(global_index, &ex);
  return ex;
}

void Loader::example_into(int64_t global_index, Example* out) const {
  // A streaming source is read by the prefetch thread alone, forward: no access from elsewhere.
  if (source_->streaming())
    throw Error(
        fmt::format("example {} asked of a streaming corpus, which is read forward only: "
                    "its batches come only from next()",
                    global_index));
  example_from_source(global_index, out);
}

void Loader::example_from_source(int64_t global_index, Example* out) const {
  const LoaderOptions& o = options_;
  Example& ex = *out;
  source_->make(global_index, &ex.inputs, &ex.targets);
  ex.decoder_inputs.clear();
  ex.decoder_inputs.push_back(o.pad_id);
  ex.decoder_inputs.insert(ex.decoder_inputs.end(), ex.targets.begin(), ex.targets.end() - 1);
  if (!source_->route(global_index, &ex)) route_example(*table_, &ex);
}

Batch Loader::batch_at(int64_t step, int64_t first_global_example) const {
  Batch b;
  batch_into(step, first_global_example, &b);
  return b;
}

void Loader::batch_into(int64_t step, int64_t first_global_example, Batch* batch) const {
  if (source_->streaming())
    throw Error(
        fmt::format("batch {} asked of a streaming corpus, which is read forward only: "
                    "its batches come only from next()",
                    step));
  build_batch(step, first_global_example, batch);
}

void Loader::build_batch(int64_t step, int64_t first_global_example, Batch* batch) const {
  Batch& b = *batch;
  b.step = step;
  b.first_example = first_global_example + options_.rank * local_batch_;
  shape_batch(static_cast<int>(local_batch_), static_cast<int>(options_.input_length),
              static_cast<int>(target_length_), &b);
  thread_local Example ex;  // reused: building a batch allocates nothing
  for (int64_t r = 0; r < local_batch_; ++r) {
    example_from_source(b.first_example + r, &ex);
    put_example(ex, r, options_.pad_id, &b);
  }
  if (options_.prepare) options_.prepare(b);  // e.g. route tokens with the dispatch plan
}

void Loader::produce() {
  while (true) {
    int64_t step = 0, first = 0;
    size_t slot = 0;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(
          lock, [&] { return stopping_ || static_cast<int>(count_) < options_.prefetch_batches; });
      if (stopping_) return;
      step = produce_step_, first = produce_example_;
      // After the ready batches; never the one next() handed out last (just before head_),
      // since count_ < prefetch_batches = slots_.size() - 1.
      slot = (head_ + count_) % slots_.size();
    }
    try {
      build_batch(step, first, &slots_[slot]);
      source_->positions(&slot_positions_[slot]);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      error_ = std::current_exception();
      changed_.notify_all();
      return;
    }
    std::lock_guard<std::mutex> lock(mutex_);
    ++count_;
    ++produce_step_;
    produce_example_ += options_.global_batch_size;
    changed_.notify_all();
  }
}

void Loader::start() {
  stopping_ = false;
  produce_step_ = step_;
  produce_example_ = example_;
  slots_.resize(static_cast<size_t>(options_.prefetch_batches) + 1);
  slot_positions_.resize(slots_.size());
  head_ = count_ = 0;
  thread_ = std::thread([this] { produce(); });
}

void Loader::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    changed_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
  head_ = count_ = 0;  // the batches keep their storage for the next start()
  error_ = nullptr;
}

const Batch& Loader::next() {
  if (!thread_.joinable()) start();
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [&] { return count_ > 0 || error_; });
  if (count_ == 0) std::rethrow_exception(error_);
  const Batch& batch = slots_[head_];
  if (source_->streaming()) positions_ = slot_positions_[head_];
  head_ = (head_ + 1) % slots_.size();
  --count_;
  MOWE_CHECK(batch.step == step_, "loader produced step {} while step {} was due", batch.step,
             step_);
  ++step_;
  example_ += options_.global_batch_size;
  changed_.notify_all();
  return batch;
}

LoaderState Loader::state() const {
  LoaderState s;
  s.set_step(step_);
  s.set_next_example(example_);
  s.set_seed(options_.seed);
  s.set_stream_hash(source_->hash());
  if (source_->streaming()) {
    source_->describe(&s);
    for (const StreamPosition& p : positions_) *s.add_streams() = p;
  }
  return s;
}

void Loader::restore(const LoaderState& state) {
  // A user's mistake (another corpus, tokenizer or data.seed than the run being resumed), not a
  // bug: one line saying what differs.
  if (const std::string why = source_->mismatch(state); !why.empty()) throw Error(why);
  if (state.stream_hash() != source_->hash() || state.seed() != options_.seed)
    throw Error(fmt::format(
        "the saved loader state belongs to another corpus, tokenizer or data.seed, or another "
        "data.task (stream {:016x} seed {}; this job has stream {:016x} seed {}): resume with the "
        "data it was trained on",
        state.stream_hash(), state.seed(), source_->hash(), options_.seed));
  if (state.step() < 0 || state.next_example() < 0)
    throw Error(fmt::format("the saved loader state has a negative position (step {}, example {})",
                            state.step(), state.next_example()));
  stop();
  if (source_->streaming()) {
    source_->seek(state);
    source_->positions(&positions_);
  }
  step_ = state.step();
  example_ = state.next_example();
}

std::vector<int64_t> count_routing_ids(const Loader& loader, int64_t num_examples,
                                       int32_t num_routing_ids) {
  std::vector<int64_t> counts(num_routing_ids, 0);
  for (int64_t g = 0; g < num_examples; ++g) {
    Example ex = loader.example(g);
    for (const auto* ids : {&ex.input_routing, &ex.decoder_routing}) {
      for (int32_t id : *ids) {
        if (id == RoutingTokenizer::kNotRouted) continue;  // pad, EOS, sentinels
        MOWE_CHECK(id >= 0 && id < num_routing_ids, "routing id {} outside [0, {})", id,
                   num_routing_ids);
        ++counts[id];
      }
    }
  }
  return counts;
}

}  // namespace mowe::data
