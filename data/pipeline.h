// The data pipeline assembled from a config: what a trainer (or mowe_vocab) calls.
//
//   auto data = data::open_pipeline(config);                 // tokenizer, vocabulary, streams
//   data::Loader train(data.train, data.table, data::loader_options(config, *data.tokenizer,
//                                                                   rank, world));
//   data::Batch b = train.next();
#pragma once

#include <memory>

#include "data/corpus.h"
#include "data/loader.h"
#include "data/routing_vocab.h"
#include "data/stream_source.h"
#include "data/synthetic.h"
#include "data/tokenizer.h"
#include "runtime/proto/config.pb.h"

namespace mowe::data {

// The corpus of data.corpus split into training and validation documents (data.seed,
// data.validation_fraction), or, with data.validation_path, all of the corpus for training and
// those files for validation. Throws when the corpus or its training split is empty.
// max_documents > 0 reads a sample of the corpus (read_corpus), e.g. for mowe_vocab on a corpus
// larger than memory.
Split read_split(const config::DataConfig& config, int64_t max_documents = 0);

// Loads data.tokenizer_model, or trains it on split.train and writes it (atomically) when the
// file does not exist or `retrain` is set. Checks it against data.sp_vocab_size and
// data.num_sentinels.
Tokenizer train_or_load_tokenizer(const config::DataConfig& config, const Split& split,
                                  bool retrain);

// Loads data.tokenizer_model and checks it against the config; for data.corpus SYNTHETIC, the
// synthetic vocabulary (no file).
Tokenizer load_tokenizer(const config::DataConfig& config);

// Builds the routing vocabulary for `config`: candidates from data.routing_word_list, or else
// the WordNet lemma names in data.wordnet_dir, ordered by frequency in split.train, limited by
// model.mowe.routing_vocab_size; routing-id frequencies counted on the raw training documents.
RoutingVocab build_routing_vocab(const config::Config& config, const Split& split,
                                 const Tokenizer& tokenizer);

struct DataPipeline {
  std::shared_ptr<const Tokenizer> tokenizer;
  std::shared_ptr<const RoutingVocab> vocab;
  std::shared_ptr<const RoutingTokenizer> table;  // with case variants per model.mowe.case_variants
  // data.task = SPAN_CORRUPTION: the token streams of both splits (the QA pairs are null) ...
  std::shared_ptr<const TokenStream> train;
  std::shared_ptr<const TokenStream> validation;
  // ... WORDNET_QA: the question-answer pairs of both splits (the streams are null).
  std::shared_ptr<const QaExamples> qa_train;
  std::shared_ptr<const QaExamples> qa_validation;
  // ... data.corpus SYNTHETIC: the examples of both splits (streams and pairs are null).
  std::shared_ptr<const SyntheticExamples> synthetic_train;
  std::shared_ptr<const SyntheticExamples> synthetic_validation;
  // ... data.streaming: the training corpus read while training (train is null; validation is
  // the in-memory stream of data.validation_path, or null without it).
  std::shared_ptr<const StreamingCorpus> streaming_train;
};

// Whether the config holds documents out for evaluation (a validation split exists).
bool has_validation_split(const config::DataConfig& config);

// Reads the corpus, loads the tokenizer and the routing vocabulary (refusing one built for
// another tokenizer or another case_variants setting) and tokenizes both splits: their documents
// for span corruption, their questions and answers for WORDNET_QA. For data.corpus SYNTHETIC:
// the synthetic vocabulary, the routing vocabulary (refusing one of a text corpus or another
// Zipf law) and the synthetic examples; nothing else is read. With data.streaming the training
// corpus is only listed (its files are read by the loaders) and validation_path is read whole.
DataPipeline open_pipeline(const config::Config& config);

// The loader of the training or the validation split for the pipeline's task.
std::unique_ptr<Loader> make_loader(const DataPipeline& data, bool validation,
                                    LoaderOptions options);

// Loader options from data.* and training.global_batch_size for one rank.
LoaderOptions loader_options(const config::Config& config, const Tokenizer& tokenizer, int rank,
                             int world_size);

}  // namespace mowe::data
