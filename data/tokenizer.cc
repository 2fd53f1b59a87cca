#include "data/tokenizer.h"

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <thread>

#include "data/spm_shim.h"
#include "runtime/check.h"
#include "runtime/config/config.h"
#include "runtime/files.h"
#include "runtime/hash.h"

#ifndef MOWE_SPM_MODULE_PATH
#define MOWE_SPM_MODULE_PATH ""
#endif

namespace mowe::data {
namespace {

constexpr size_t kErrorSize = 1024;
// SentencePiece skips training sentences longer than max_sentence_length (4192 bytes by default).
constexpr size_t kMaxTrainingPiece = 4000;

struct Module {
  mowe_spm_api api{};
  std::string error;  // empty when loaded
};

std::vector<std::string> module_candidates() {
  std::vector<std::string> paths;
  if (const char* env = std::getenv("MOWE_SPM_MODULE")) paths.emplace_back(env);
  if (*MOWE_SPM_MODULE_PATH) paths.emplace_back(MOWE_SPM_MODULE_PATH);
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) paths.push_back((exe.parent_path().parent_path() / "lib" / "libmowe_spm.so").string());
  return paths;
}

using DlopenFn = void* (*)(const char*, int);

// dlopen itself, except under AddressSanitizer: its dlopen interceptor refuses RTLD_DEEPBIND
// outright (google/sanitizers#611: a deep-bound library may call libc's malloc and free around
// the sanitizer's). Only plain C types cross this module's boundary (spm_shim.h) and every
// allocation inside it is freed inside it, so the sanitizer build calls libc's own dlopen, which
// the interceptor does not see. The sanitizer runs then set alloc_dealloc_mismatch=0: the
// deep-bound SentencePiece pairs libstdc++'s operator new with the sanitizer's operator delete.
DlopenFn module_dlopen() {
#if defined(__SANITIZE_ADDRESS__)
  if (void* libc = ::dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD)) {
    if (void* real = ::dlsym(libc, "dlopen")) return reinterpret_cast<DlopenFn>(real);
  }
#endif
  return &::dlopen;
}

Module load_module() {
  Module m;
  const DlopenFn open_module = module_dlopen();
  std::string tried;
  for (const std::string& path : module_candidates()) {
    if (!std::filesystem::exists(path)) {
      tried += "\n  " + path + ": missing";
      continue;
    }
    void* handle = open_module(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (!handle) {
      tried += "\n  " + path + ": " + ::dlerror();
      continue;
    }
    auto get = reinterpret_cast<void (*)(mowe_spm_api*)>(::dlsym(handle, "mowe_spm_get_api"));
    if (!get) {
      tried += "\n  " + path + ": no mowe_spm_get_api";
      continue;
    }
    get(&m.api);
    return m;
  }
  m.error =
      "cannot load the SentencePiece module libmowe_spm.so (build the mowe_spm target; "
      "set MOWE_SPM_MODULE to its path); tried:" +
      tried;
  return m;
}

const Module& module() {
  static const Module m = load_module();
  return m;
}

const mowe_spm_api& api() {
  const Module& m = module();
  if (!m.error.empty()) throw Error(m.error);
  return m.api;
}

// Training sentences: documents cut at spaces into pieces SentencePiece accepts.
struct SentenceSource {
  const std::vector<std::string>* documents;
  size_t doc = 0, offset = 0;

  static int next(void* ctx, const char** text, size_t* size) {
    auto* self = static_cast<SentenceSource*>(ctx);
    while (self->doc < self->documents->size()) {
      const std::string& d = (*self->documents)[self->doc];
      if (self->offset >= d.size()) {
        ++self->doc, self->offset = 0;
        continue;
      }
      size_t end = d.size();
      if (end - self->offset > kMaxTrainingPiece) {
        end = d.rfind(' ', self->offset + kMaxTrainingPiece);
        if (end == std::string::npos || end <= self->offset) {
          end = self->offset + kMaxTrainingPiece;  // no space: cut at a character boundary
          while (end > self->offset && (static_cast<unsigned char>(d[end]) & 0xc0) == 0x80) --end;
        }
      }
      *text = d.data() + self->offset;
      *size = end - self->offset;
      self->offset = end + (end < d.size() && d[end] == ' ' ? 1 : 0);
      return 1;
    }
    return 0;
  }
};

void append_bytes(void* ctx, const char* bytes, size_t size) {
  static_cast<std::string*>(ctx)->append(bytes, size);
}

void append_ids(void* ctx, const int* ids, size_t count) {
  auto* out = static_cast<std::vector<int32_t>*>(ctx);
  out->insert(out->end(), ids, ids + count);
}

}  // namespace

std::string format_hash(uint64_t hash) {
  return fmt::format("{:016x}", hash);
}

bool sentencepiece_available(std::string* why) {
  const Module& m = module();
  if (why) *why = m.error;
  return m.error.empty();
}

std::string Tokenizer::train(const std::vector<std::string>& documents,
                             const TokenizerTrainOptions& options) {
  MOWE_REQUIRE(
      !documents.empty(),
      "cannot train SentencePiece on an empty corpus: point data.corpus_path at documents");
  MOWE_REQUIRE(options.vocab_size > options.num_sentinels + 3,
               "SentencePiece vocabulary of {} pieces has no room beyond pad, eos, unk and {} "
               "sentinels: raise data.sp_vocab_size or lower data.num_sentinels",
               options.vocab_size, options.num_sentinels);
  std::string sentinels;
  for (int k = 0; k < options.num_sentinels; ++k)
    sentinels += fmt::format("{}<extra_id_{}>", k ? "," : "", k);
  int threads = options.num_threads > 0 ? options.num_threads
                                        : std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::pair<std::string, std::string>> flags = {
      {"model_type", "unigram"},
      {"vocab_size", std::to_string(options.vocab_size)},
      {"pad_id", "0"},
      {"eos_id", "1"},
      {"unk_id", "2"},
      {"bos_id", "-1"},
      {"character_coverage", fmt::format("{}", options.character_coverage)},
      {"input_sentence_size", std::to_string(options.max_sentences)},
      {"shuffle_input_sentence", "true"},
      {"num_threads", std::to_string(threads)},
      {"mowe_seed", std::to_string(options.seed)},
      {"minloglevel", "1"}};
  // An empty list would be one empty symbol, which SentencePiece refuses.
  if (!sentinels.empty()) flags.emplace_back("user_defined_symbols", sentinels);
  std::vector<const char*> keys, values;
  for (const auto& [k, v] : flags) keys.push_back(k.c_str()), values.push_back(v.c_str());
  SentenceSource source{&documents};
  std::string model;
  char error[kErrorSize] = "";
  if (api().train(keys.data(), values.data(), static_cast<int>(keys.size()), SentenceSource::next,
                  &source, append_bytes, &model, error, sizeof error) != 0)
    throw Error(fmt::format("SentencePiece training failed: {}", error));
  return model;
}

Tokenizer Tokenizer::load(const std::string& path) {
  return from_model(read_file(path, "SentencePiece model"), path);
}

bool Tokenizer::is_sentencepiece_model(const std::string& model) {
  char error[kErrorSize] = "";
  mowe_spm* spm = api().load(model.data(), model.size(), error, sizeof error);
  if (spm) api().free(spm);
  return spm != nullptr;
}

Tokenizer Tokenizer::from_model(std::string model, std::string source) {
  Tokenizer t;
  t.api_ = &api();
  char error[kErrorSize] = "";
  t.spm_ = t.api_->load(model.data(), model.size(), error, sizeof error);
  // SentencePiece models carry no checksum: a damaged one is caught here when it no longer
  // parses, or later by the routing vocabulary's record of the model
  // (RoutingVocab::check_tokenizer).
  if (!t.spm_)
    throw UserError(fmt::format(
        "SentencePiece model {} is not a valid SentencePiece model: it is damaged, truncated or "
        "another kind of file ({}): retrain it and the routing vocabulary with {}",
        source, error, config::command_for_this_config("mowe_vocab", "--retrain")));
  t.model_ = std::move(model);
  t.source_ = std::move(source);
  t.hash_ = hash_bytes(t.model_);
  int n = t.api_->piece_size(t.spm_);
  for (int id = 0; id < n; ++id) {
    size_t size = 0;
    const char* p = t.api_->id_to_piece(t.spm_, id, &size);
    t.pieces_.emplace_back(p, size);
    t.starts_word_.push_back(t.pieces_.back().rfind("\xe2\x96\x81", 0) == 0);
  }
  // The ids are constants throughout (the loader pads with 0, which also starts every decoder
  // sequence; streams end documents with 1; decoding stops at 1), as in T5: a model with others
  // is refused rather than remapped.
  const int pad = t.api_->special_id(t.spm_, 0), eos = t.api_->special_id(t.spm_, 1),
            unk = t.api_->special_id(t.spm_, 2);
  if (pad != kPadId || eos != kEosId || unk != kUnkId)
    throw UserError(fmt::format(
        "SentencePiece model {} has pad={}, eos={}, unk={} (-1: none), but MoWE uses T5's ids "
        "pad=0, eos=1, unk=2: use a model trained with those ids (T5's models are), or let "
        "mowe_vocab train one on the corpus by setting data.tokenizer_model to a path that does "
        "not exist yet",
        t.source_, pad, eos, unk));
  for (int k = 0;; ++k) {
    const int32_t id = t.find_sentinel(k);
    if (id < 0) break;
    t.sentinels_.push_back(id);
  }
  return t;
}

int32_t Tokenizer::find_sentinel(int k) const {
  for (const std::string& name :
       {fmt::format("<extra_id_{}>", k), fmt::format("\xe2\x96\x81<extra_id_{}>", k)}) {
    int32_t id = -1;
    if (spm_) {
      id = api_->piece_to_id(spm_, name.data(), name.size());
    } else {
      auto it = std::find(pieces_.begin(), pieces_.end(), name);
      if (it != pieces_.end()) id = static_cast<int32_t>(it - pieces_.begin());
    }
    // SentencePiece answers unk for a piece it does not have.
    if (id >= 0 && id < vocab_size() && pieces_[id] == name) return id;
  }
  return -1;
}

bool Tokenizer::is_sentinel(int32_t id) const {
  return std::find(sentinels_.begin(), sentinels_.end(), id) != sentinels_.end();
}

bool Tokenizer::trained_by_mowe_vocab() const {
  if (sentinels_.empty()) return false;
  for (int k = 0; k < num_sentinels(); ++k)
    if (sentinels_[k] != kUnkId + 1 + k) return false;
  return true;
}

int Tokenizer::missing_sentinels(int n) const {
  int missing = 0;
  for (int k = 0; k < n; ++k) missing += find_sentinel(k) < 0;
  return missing;
}

std::string Tokenizer::with_sentinels(int n) const {
  MOWE_CHECK(spm_, "{} has no SentencePiece model to add sentinels to", source_);
  std::vector<std::string> names;
  for (int k = n - 1; k >= 0; --k)
    if (find_sentinel(k) < 0) names.push_back(fmt::format("<extra_id_{}>", k));
  if (names.empty()) return model_;
  std::vector<const char*> data;
  std::vector<size_t> sizes;
  for (const std::string& name : names) data.push_back(name.data()), sizes.push_back(name.size());
  std::string out;
  char error[kErrorSize] = "";
  if (api_->append_pieces(model_.data(), model_.size(), data.data(), sizes.data(), names.size(),
                          append_bytes, &out, error, sizeof error) != 0)
    throw Error(fmt::format("cannot add sentinels to SentencePiece model {}: {}", source_, error));
  return out;
}

Tokenizer Tokenizer::synthetic(int32_t vocab_size, int num_sentinels) {
  MOWE_REQUIRE(vocab_size > kUnkId + 1 + num_sentinels,
               "a synthetic vocabulary of {} ids has no room for pad, EOS, unk and {} sentinels "
               "besides ordinary ids: raise data.sp_vocab_size or lower data.num_sentinels",
               vocab_size, num_sentinels);
  Tokenizer t;
  t.source_ =
      fmt::format("the SYNTHETIC vocabulary ({} ids, {} sentinels)", vocab_size, num_sentinels);
  t.hash_ = hash_bytes(fmt::format("mowe synthetic vocabulary {} {}", vocab_size, num_sentinels));
  t.pieces_ = {"<pad>", "</s>", "<unk>"};
  for (int k = 0; k < num_sentinels; ++k) {
    t.sentinels_.push_back(static_cast<int32_t>(t.pieces_.size()));
    t.pieces_.push_back(fmt::format("<extra_id_{}>", k));
  }
  for (int32_t id = static_cast<int32_t>(t.pieces_.size()); id < vocab_size; ++id)
    t.pieces_.push_back(fmt::format("\xe2\x96\x81{}", id));
  for (const std::string& piece : t.pieces_)
    t.starts_word_.push_back(piece.rfind("\xe2\x96\x81", 0) == 0);
  return t;
}

Tokenizer::Tokenizer(Tokenizer&& other) noexcept {
  *this = std::move(other);
}

Tokenizer& Tokenizer::operator=(Tokenizer&& other) noexcept {
  if (this != &other) {
    if (spm_) api_->free(spm_);
    api_ = other.api_;
    spm_ = other.spm_;
    other.spm_ = nullptr;
    model_ = std::move(other.model_);
    source_ = std::move(other.source_);
    hash_ = other.hash_;
    sentinels_ = std::move(other.sentinels_);
    pieces_ = std::move(other.pieces_);
    starts_word_ = std::move(other.starts_word_);
  }
  return *this;
}

Tokenizer::~Tokenizer() {
  if (spm_) api_->free(spm_);
}

void Tokenizer::encode(std::string_view text, std::vector<int32_t>* ids) const {
  if (!spm_)
    throw UserError(
        fmt::format("{} has no text tokenizer: data.corpus SYNTHETIC makes token ids, "
                    "not text (use a WORDNET, TEXT or JSONL corpus to encode text)",
                    source_));
  char error[kErrorSize] = "";
  if (api_->encode(spm_, text.data(), text.size(), append_ids, ids, error, sizeof error) != 0)
    throw Error(fmt::format("SentencePiece ({}) cannot encode text: {}", source_, error));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids;
  encode(text, &ids);
  return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  for (int32_t id : ids)
    MOWE_CHECK(id >= 0 && id < vocab_size(), "token id {} is outside the vocabulary [0, {})", id,
               vocab_size());
  std::string text;
  if (!spm_) {  // synthetic: the pieces, space-separated
    for (int32_t id : ids) text += (text.empty() ? "" : " ") + pieces_[id];
    return text;
  }
  char error[kErrorSize] = "";
  if (api_->decode(spm_, ids.data(), ids.size(), append_bytes, &text, error, sizeof error) != 0)
    throw Error(fmt::format("SentencePiece ({}) cannot decode ids: {}", source_, error));
  return text;
}

}  // namespace mowe::data
