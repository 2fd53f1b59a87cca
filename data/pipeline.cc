#include "data/pipeline.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>

#include "runtime/check.h"
#include "runtime/config/config.h"
#include "runtime/files.h"
#include "runtime/hash.h"

namespace mowe::data {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// A user's model (T5's, say) is refused with what makes it usable, never with --retrain, which
// would replace it; a model mowe_vocab trained may be retrained.
void check_tokenizer(const Tokenizer& t, const config::DataConfig& config) {
  const std::string retrain =
      t.trained_by_mowe_vocab()
          ? "; or retrain it: " + config::command_for_this_config("mowe_vocab", "--retrain")
          : "";
  // Sentinels first: adding them changes the piece count the second check asks for.
  if (t.num_sentinels() < config.num_sentinels()) {
    const std::filesystem::path source = t.source();
    const std::string copy =
        (source.parent_path() / (source.stem().string() + ".sentinels.model")).string();
    throw UserError(fmt::format(
        "SentencePiece model {} has {} sentinel pieces (<extra_id_0>, <extra_id_1>, ...), but "
        "data.num_sentinels needs {}: write a copy with the missing ones appended at the top of "
        "its vocabulary, as T5 does, with {}, then set data.tokenizer_model={} and "
        "data.sp_vocab_size={}{}",
        t.source(), t.num_sentinels(), config.num_sentinels(),
        config::command_for_this_config("mowe_vocab", "--add-sentinels " + copy), copy,
        t.vocab_size() + t.missing_sentinels(config.num_sentinels()), retrain));
  }
  if (t.vocab_size() != config.sp_vocab_size())
    throw UserError(fmt::format(
        "SentencePiece model {} has {} pieces, but data.sp_vocab_size is {}: it must be the "
        "model's piece count, sentinels included: set data.sp_vocab_size={} (and model.vocab_size "
        "to at least that){}",
        t.source(), t.vocab_size(), config.sp_vocab_size(), t.vocab_size(), retrain));
}

// --retrain writes data.tokenizer_model: never over a model mowe_vocab did not train (a user's
// T5 model). A file that is no SentencePiece model at all (damaged) may be replaced.
void refuse_replacing_a_foreign_model(const std::string& path) {
  const std::string bytes = read_file(path, "SentencePiece model");
  if (!Tokenizer::is_sentencepiece_model(bytes)) return;
  bool ours = false;
  try {
    ours = Tokenizer::from_model(bytes, path).trained_by_mowe_vocab();
  } catch (const Error&) {
    // Other special ids: not one of ours either.
  }
  if (!ours)
    throw UserError(fmt::format(
        "--retrain would replace SentencePiece model {}, which mowe_vocab did not train (its "
        "sentinels are not right after pad, eos and unk): to train a new one, set "
        "data.tokenizer_model to another path",
        path));
}

// The last split of each name a process tokenized, by what it was made from: a process that
// opens the same data again (the trainer tests build dozens of trainers; an evaluation after
// training) shares the stream instead of tokenizing ten million tokens anew. Streams are
// immutable, and the key covers every input: the documents' bytes, the tokenizer and the seed.
struct TokenizedSplitCache {
  std::mutex mutex;
  struct Entry {
    uint64_t key = 0;
    std::shared_ptr<const TokenStream> stream;
  };
  std::map<std::string, Entry> last;
};

TokenizedSplitCache& tokenized_splits() {
  static TokenizedSplitCache* cache = new TokenizedSplitCache;
  return *cache;
}

std::shared_ptr<const TokenStream> tokenize_split(const std::vector<std::string>& docs,
                                                  const Tokenizer& tokenizer, uint64_t seed,
                                                  const char* name) {
  auto t0 = std::chrono::steady_clock::now();
  uint64_t key = hash_ints(tokenizer.hash(), seed, docs.size());
  for (const std::string& d : docs) key = hash_bytes(d, key);
  TokenizedSplitCache& cache = tokenized_splits();
  {
    std::lock_guard<std::mutex> lock(cache.mutex);
    auto it = cache.last.find(name);
    if (it != cache.last.end() && it->second.key == key) {
      spdlog::info("[data] {} split: {} documents, {} tokens (tokenized before in this process)",
                   name, docs.size(), it->second.stream->size());
      return it->second.stream;
    }
  }
  TokenizedCorpus tokens = tokenize_documents(docs, tokenizer);
  auto stream = std::make_shared<const TokenStream>(tokens, Tokenizer::kEosId, seed);
  spdlog::info("[data] {} split: {} documents, {} tokens ({:.1f} s)", name, docs.size(),
               stream->size(), seconds_since(t0));
  std::lock_guard<std::mutex> lock(cache.mutex);
  cache.last[name] = {key, stream};
  return stream;
}

}  // namespace

Split read_split(const config::DataConfig& config, int64_t max_documents) {
  if (config.corpus() == config::DataConfig::SYNTHETIC)
    throw UserError(
        "data.corpus SYNTHETIC has no documents to split: its examples are drawn, not read "
        "(docs/data.md)");
  auto t0 = std::chrono::steady_clock::now();
  Corpus corpus = read_corpus(config, max_documents);
  const size_t total = corpus.documents.size();
  if (max_documents > 0) corpus.source = fmt::format("a sample of {}", corpus.source);
  Split split;
  if (!config.validation_path().empty()) {
    split.train = std::move(corpus.documents);
    split.validation = read_validation_corpus(config).documents;
  } else if (config.streaming()) {
    split.train = std::move(corpus.documents);  // a streaming corpus is never split
  } else {
    split = split_corpus(std::move(corpus.documents), config.validation_fraction(),
                         static_cast<uint64_t>(config.seed()));
  }
  MOWE_REQUIRE(!split.train.empty(),
               "{}: all {} documents fell in the validation split: lower data.validation_fraction",
               corpus.source, total);
  spdlog::info("[data] {}: {} documents ({:.1f} MB), {} for training, {} for validation ({:.1f} s)",
               corpus.source, total, corpus.stats.bytes / 1e6, split.train.size(),
               split.validation.size(), seconds_since(t0));
  return split;
}

bool has_validation_split(const config::DataConfig& config) {
  if (!config.validation_path().empty()) return true;
  return !config.streaming() && config.validation_fraction() > 0;
}

Tokenizer load_tokenizer(const config::DataConfig& config) {
  if (config.corpus() == config::DataConfig::SYNTHETIC) return synthetic_tokenizer(config);
  MOWE_REQUIRE(
      !config.tokenizer_model().empty(),
      "data.tokenizer_model is empty: set it to the SentencePiece model mowe_vocab writes");
  Tokenizer t = Tokenizer::load(config.tokenizer_model());
  check_tokenizer(t, config);
  return t;
}

Tokenizer train_or_load_tokenizer(const config::DataConfig& config, const Split& split,
                                  bool retrain) {
  const std::string& path = config.tokenizer_model();
  MOWE_REQUIRE(!path.empty(),
               "data.tokenizer_model is empty: set where the SentencePiece model goes");
  if (!retrain && std::filesystem::exists(path)) {
    spdlog::info("[vocab] using the existing tokenizer {} (--retrain to train a new one)", path);
    return load_tokenizer(config);
  }
  if (retrain && std::filesystem::exists(path)) refuse_replacing_a_foreign_model(path);
  auto t0 = std::chrono::steady_clock::now();
  spdlog::info("[vocab] training SentencePiece ({} pieces, {} sentinels) on {} documents ...",
               config.sp_vocab_size(), config.num_sentinels(), split.train.size());
  TokenizerTrainOptions options;
  options.vocab_size = config.sp_vocab_size();
  options.num_sentinels = config.num_sentinels();
  options.character_coverage = config.sp_character_coverage();
  options.seed = static_cast<uint64_t>(config.seed());
  std::string model = Tokenizer::train(split.train, options);
  write_file_atomically(path, model);
  spdlog::info("[vocab] wrote {} ({:.1f} s)", path, seconds_since(t0));
  Tokenizer t = Tokenizer::from_model(std::move(model), path);
  check_tokenizer(t, config);
  return t;
}

RoutingVocab build_routing_vocab(const config::Config& config, const Split& split,
                                 const Tokenizer& tokenizer) {
  const config::DataConfig& d = config.data();
  auto t0 = std::chrono::steady_clock::now();
  TokenizedCorpus tokens =
      tokenize_documents(split.train, tokenizer, 0, [](int64_t done, int64_t total) {
        spdlog::info("[vocab] tokenized {}/{} documents", done, total);
      });
  spdlog::info("[vocab] training split: {} tokens ({:.1f} s)", tokens.tokens.size(),
               seconds_since(t0));
  t0 = std::chrono::steady_clock::now();
  const RoutingVocabOptions options{.max_routing_ids = config.model().mowe().routing_vocab_size(),
                                    .case_variants = config.model().mowe().case_variants()};
  if (!d.routing_word_list().empty()) {
    RoutingVocab vocab = RoutingVocab::build_from_word_list(tokenizer, d.routing_word_list(),
                                                            split.train, tokens, options);
    spdlog::info("[vocab] {} auxiliary entries from {} ({:.1f} s)", vocab.file().entries_size(),
                 d.routing_word_list(), seconds_since(t0));
    return vocab;
  }
  std::vector<std::string> names;
  for (const Synset& s : read_wordnet(d.wordnet_dir()))
    names.insert(names.end(), s.lemmas.begin(), s.lemmas.end());
  RoutingVocab vocab = RoutingVocab::build(tokenizer, names, split.train, tokens, options);
  spdlog::info("[vocab] {} auxiliary words ({:.1f} s)", vocab.file().entries_size(),
               seconds_since(t0));
  return vocab;
}

namespace {

DataPipeline open_synthetic_pipeline(const config::Config& config) {
  const config::DataConfig& d = config.data();
  DataPipeline p;
  p.tokenizer = std::make_shared<const Tokenizer>(synthetic_tokenizer(d));
  MOWE_REQUIRE(!d.routing_vocab().empty(),
               "data.routing_vocab is empty: set it to the file mowe_vocab writes");
  auto vocab = std::make_shared<RoutingVocab>(RoutingVocab::load(d.routing_vocab()));
  if (std::string why = synthetic_vocab_mismatch(config, *vocab, d.routing_vocab()); !why.empty())
    throw UserError(why);
  vocab->check_tokenizer(*p.tokenizer);
  p.table = std::make_shared<const RoutingTokenizer>(vocab->table(false));  // never consulted
  p.vocab = std::move(vocab);
  auto t0 = std::chrono::steady_clock::now();
  using Split = SyntheticExamples::Split;
  p.synthetic_train = std::make_shared<const SyntheticExamples>(config, Split::kTrain);
  p.synthetic_validation = std::make_shared<const SyntheticExamples>(config, Split::kValidation);
  spdlog::info(
      "[data] SYNTHETIC corpus (benchmarks only, no language): token ids Zipf({}) over {} "
      "ordinary ids, routing ids Zipf({}) over {} ids, seed {} ({:.1f} s)",
      d.synthetic_zipf_exponent(), p.synthetic_train->token_law().size(),
      d.synthetic_zipf_exponent(), p.synthetic_train->routing_law().size(), d.seed(),
      seconds_since(t0));
  return p;
}

}  // namespace

DataPipeline open_pipeline(const config::Config& config) {
  const config::DataConfig& d = config.data();
  if (d.corpus() == config::DataConfig::SYNTHETIC) return open_synthetic_pipeline(config);
  DataPipeline p;
  // A streaming corpus is only listed here: the loaders read its files while training.
  Split split = d.streaming() ? Split{} : read_split(d);
  p.tokenizer = std::make_shared<const Tokenizer>(load_tokenizer(d));
  MOWE_REQUIRE(!d.routing_vocab().empty(),
               "data.routing_vocab is empty: set it to the file mowe_vocab writes");
  auto vocab = std::make_shared<RoutingVocab>(RoutingVocab::load(d.routing_vocab(), *p.tokenizer));
  const bool variants = config.model().mowe().case_variants();
  MOWE_REQUIRE(vocab->case_variants() == variants,
               "{} counted its frequencies with case_variants={}, but model.mowe.case_variants is "
               "{}: rebuild it with mowe_vocab",
               d.routing_vocab(), vocab->case_variants(), variants);
  MOWE_REQUIRE(!vocab->synthetic(),
               "routing vocabulary {} was built for data.corpus SYNTHETIC, but data.corpus is {}: "
               "rebuild it with {}",
               d.routing_vocab(), config::DataConfig::Corpus_Name(d.corpus()),
               config::command_for_this_config("mowe_vocab"));
  p.table = std::make_shared<const RoutingTokenizer>(vocab->table(variants));
  p.vocab = std::move(vocab);
  const uint64_t seed = static_cast<uint64_t>(d.seed());
  if (d.task() == config::DataConfig::WORDNET_QA) {
    auto t0 = std::chrono::steady_clock::now();
    const QaSplit qa = wordnet_qa(read_wordnet(d.wordnet_dir()), d.validation_fraction(), seed);
    p.qa_train = std::make_shared<const QaExamples>(tokenize_qa(qa.train, *p.tokenizer, seed));
    p.qa_validation =
        std::make_shared<const QaExamples>(tokenize_qa(qa.validation, *p.tokenizer, seed));
    spdlog::info("[data] WordNet questions: {} for training, {} for validation ({:.1f} s)",
                 qa.train.size(), qa.validation.size(), seconds_since(t0));
    return p;
  }
  if (d.streaming()) {
    p.streaming_train =
        std::make_shared<const StreamingCorpus>(open_streaming_corpus(config, p.tokenizer));
    spdlog::info("[data] streaming {} files of {} in {} streams", p.streaming_train->files.size(),
                 d.corpus_path(), p.streaming_train->num_streams);
    if (!d.validation_path().empty())
      p.validation =
          tokenize_split(read_validation_corpus(d).documents, *p.tokenizer, seed, "validation");
    return p;
  }
  p.train = tokenize_split(split.train, *p.tokenizer, seed, "training");
  p.validation = tokenize_split(split.validation, *p.tokenizer, seed, "validation");
  return p;
}

std::unique_ptr<Loader> make_loader(const DataPipeline& data, bool validation,
                                    LoaderOptions options) {
  if (data.synthetic_train)
    return std::make_unique<Loader>(validation ? data.synthetic_validation : data.synthetic_train,
                                    data.table, std::move(options));
  if (data.qa_train)
    return std::make_unique<Loader>(validation ? data.qa_validation : data.qa_train, data.table,
                                    std::move(options));
  if (data.streaming_train && !validation)
    return std::make_unique<Loader>(data.streaming_train, data.table, std::move(options));
  MOWE_CHECK(!validation || data.validation, "this pipeline has no validation split");
  return std::make_unique<Loader>(validation ? data.validation : data.train, data.table,
                                  std::move(options));
}

LoaderOptions loader_options(const config::Config& config, const Tokenizer& tokenizer, int rank,
                             int world_size) {
  const config::DataConfig& d = config.data();
  LoaderOptions o;
  o.input_length = d.input_length();
  o.target_length = d.target_length();
  o.noise_density = d.noise_density();
  o.mean_noise_span_length = d.mean_noise_span_length();
  o.seed = static_cast<uint64_t>(d.seed());
  o.global_batch_size = config.training().global_batch_size();
  o.rank = rank;
  o.world_size = world_size;
  o.prefetch_batches = d.prefetch_batches();
  o.loader_threads = d.loader_threads();
  o.pad_id = Tokenizer::kPadId;
  o.eos_id = Tokenizer::kEosId;
  for (int k = 0; k < d.num_sentinels(); ++k) o.sentinels.push_back(tokenizer.sentinel(k));
  return o;
}

}  // namespace mowe::data
