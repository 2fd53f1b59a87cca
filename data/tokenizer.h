// The default tokenizer: SentencePiece (the library, through the libmowe_spm module, see
// spm_shim.h), with T5's conventions: pad = 0, eos = 1, unk = 2, no bos, and sentinels
// <extra_id_0> ... <extra_id_{n-1}> as pieces of the model. mowe_vocab trains one on the
// training split with the sentinels as user-defined pieces at ids 3 .. n + 2; a model the user
// brings (a T5 32K model, say) keeps its sentinels wherever they are: T5 appends them at the top
// of the vocabulary, <extra_id_0> last, and seqio writes them as "▁<extra_id_k>", which is
// recognised too. Every program asks sentinel(k), never computes an id. The model is identified
// by a hash of its serialized bytes, which the routing vocabulary records so that a vocabulary
// built for another tokenizer is refused.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

struct mowe_spm;
struct mowe_spm_api;

namespace mowe::data {

struct TokenizerTrainOptions {
  int vocab_size = 8000;  // every piece: pad, eos, unk, the sentinels and the learned pieces
  int num_sentinels = 100;
  double character_coverage = 0.9995;
  int num_threads = 0;                // 0 = every core
  int64_t max_sentences = 2'000'000;  // SentencePiece samples this many training sentences
  uint64_t seed = 0;                  // seeds that sampling
};

// "0123456789abcdef": how hashes are shown in files and messages.
std::string format_hash(uint64_t hash);

// False (with the reason) when SentencePiece cannot be used in this process: the module
// libmowe_spm is missing or does not load.
bool sentencepiece_available(std::string* why = nullptr);

class Tokenizer {
 public:
  static constexpr int32_t kPadId = 0;
  static constexpr int32_t kEosId = 1;
  static constexpr int32_t kUnkId = 2;

  // Trains a unigram model on the documents (long ones are cut at spaces into sentence-sized
  // pieces) and returns the serialized model (the bytes of a .model file).
  static std::string train(const std::vector<std::string>& documents,
                           const TokenizerTrainOptions& options);
  static Tokenizer load(const std::string& path);
  // True when `model` parses as a SentencePiece model (whatever its special ids and pieces).
  static bool is_sentencepiece_model(const std::string& model);
  // `source` names the model in messages.
  static Tokenizer from_model(std::string model, std::string source);
  // The vocabulary of the SYNTHETIC corpus, with no SentencePiece model behind it: pad, eos,
  // unk, <extra_id_0..num_sentinels-1>, then ordinary ids whose pieces are "▁<id>". Its hash
  // depends on the two sizes only. encode() refuses text (there is none); decode() joins pieces.
  static Tokenizer synthetic(int32_t vocab_size, int num_sentinels);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  int32_t vocab_size() const { return static_cast<int32_t>(pieces_.size()); }
  int num_sentinels() const { return static_cast<int>(sentinels_.size()); }
  int32_t sentinel(int k) const { return sentinels_.at(k); }  // id of <extra_id_k>
  bool is_sentinel(int32_t id) const;
  // True when the sentinels sit right after pad, eos and unk, as in the models mowe_vocab trains
  // (and so may replace with --retrain); false for a model without sentinels or T5's.
  bool trained_by_mowe_vocab() const;
  // How many of <extra_id_0..n-1> the model lacks.
  int missing_sentinels(int n) const;
  // The serialized model with the missing ones of <extra_id_0..n-1> appended as user-defined
  // pieces at the top of the vocabulary, the highest first as T5 does (a 32000-piece model given
  // 100 gets <extra_id_k> at 32099 - k, T5's ids). Existing pieces keep their ids.
  std::string with_sentinels(int n) const;
  const std::string& piece(int32_t id) const { return pieces_.at(id); }
  // True when the piece begins a word (starts with U+2581, SentencePiece's space marker).
  bool starts_word(int32_t id) const { return starts_word_[id] != 0; }

  // Appends the ids of `text` (thread-safe: several threads may encode at once).
  void encode(std::string_view text, std::vector<int32_t>* ids) const;
  std::vector<int32_t> encode(std::string_view text) const;
  std::string decode(const std::vector<int32_t>& ids) const;

  uint64_t hash() const { return hash_; }
  const std::string& model() const { return model_; }
  const std::string& source() const { return source_; }

 private:
  Tokenizer() = default;
  // The id of <extra_id_k> under either spelling, or -1.
  int32_t find_sentinel(int k) const;

  const mowe_spm_api* api_ = nullptr;
  mowe_spm* spm_ = nullptr;
  std::string model_, source_;
  uint64_t hash_ = 0;
  std::vector<int32_t> sentinels_;
  std::vector<std::string> pieces_;
  std::vector<uint8_t> starts_word_;
};

}  // namespace mowe::data
