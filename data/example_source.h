// Where a loader's examples come from (ExampleSource): the interface the loader (loader.h) reads
// its examples through and the streaming corpus (stream_source.h) implements, with the span
// corruption every span-corrupting source applies to its chunks.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/batch.h"
#include "data/proto/loader_state.pb.h"
#include "data/span_corruption.h"

namespace mowe::data {

class ExampleSource {
 public:
  virtual ~ExampleSource() = default;
  // The inputs and targets of global example g, each ending with EOS and within the lengths the
  // source was made for: a pure function of g.
  virtual void make(int64_t global_index, std::vector<int32_t>* inputs,
                    std::vector<int32_t>* targets) const = 0;
  // Fingerprint of the examples, recorded in saved loader states.
  virtual uint64_t hash() const = 0;
  // Sets the routing ids of example g's inputs and decoder inputs and returns true when the
  // source draws them itself (SYNTHETIC); false: the routing tokenizer routes the tokens.
  virtual bool route(int64_t /*global_index*/, Example* /*example*/) const { return false; }

  // A streaming source (data.streaming) reads its files forward and has a position; the others
  // are pure functions of the example index and have none.
  virtual bool streaming() const { return false; }
  // The position of every stream this source reads (after a batch is built: at the boundary of
  // the next step, since a streaming source reads its streams a whole step at a time).
  virtual void positions(std::vector<StreamPosition>* out) const { out->clear(); }
  // Continues at the positions of a saved state (which may hold other streams too).
  virtual void seek(const LoaderState& /*state*/) {}
  // Why a saved state cannot continue this source ("" when it can): a streaming source names
  // the setting that differs before the fingerprint is compared.
  virtual std::string mismatch(const LoaderState& /*state*/) const { return ""; }
  // Records in a state what mismatch() compares.
  virtual void describe(LoaderState* /*state*/) const {}
};

// T5 span corruption of global example g's raw chunk (lengths.tokens_length tokens), its noise
// mask seeded with hash(seed, g).
void corrupt_chunk(const int32_t* chunk, int64_t g, const LoaderOptions& options,
                   const SpanLengths& lengths, int64_t target_length, std::vector<int32_t>* inputs,
                   std::vector<int32_t>* targets);

}  // namespace mowe::data
