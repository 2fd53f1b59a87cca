// Configuration: parsing, --set overrides, validation messages (asserted word for word, since
// they are the user interface), generated help and reference, and the shared flag parser.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "data/config_rules.h"
#include "launch/train/config_rules.h"
#include "model/config_rules.h"
#include "runtime/check.h"
#include "runtime/config/config.h"

namespace mowe::config {
namespace {

// The whole validation, every module's rules, as the programs load configs.
using train::load_config;
using train::load_config_text;
using train::validate;

const std::filesystem::path kSourceDir = MOWE_SOURCE_DIR;

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::string tiny_text() {
  return read_file(kSourceDir / "configs/tiny.textproto");
}

// The message of the Error that f throws, checked to be one line.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    std::string message = e.what();
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    return message;
  }
  ADD_FAILURE() << "no mowe::Error thrown";
  return "";
}

std::string load_error(const std::string& text, const std::vector<std::string>& overrides = {}) {
  return error_of([&] { load_config_text(text, "x.textproto", overrides); });
}

std::string tiny_error(const std::vector<std::string>& overrides) {
  return error_of([&] { load_config_text(tiny_text(), "tiny.textproto", overrides); });
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.rfind(prefix, 0) == 0;
}

TEST(ConfigLoad, DefaultsAreValid) {
  validate(Config());
}

TEST(ConfigLoad, EveryShippedConfigLoadsAndValidates) {
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(kSourceDir / "configs")) {
    if (entry.path().extension() != ".textproto") continue;
    SCOPED_TRACE(entry.path().string());
    EXPECT_NO_THROW(load_config(entry.path().string(), {}));
    ++count;
  }
  EXPECT_GE(count, 2);
}

TEST(ConfigLoad, MalformedTextNamesLineColumnAndField) {
  EXPECT_EQ(load_error("model {\n  d_model: 16\n  num_heads: }\n"),
            "x.textproto:3:14: model.num_heads: Expected integer, got: }");
  EXPECT_EQ(load_error("model {\n  d_model: 16\n"),
            "x.textproto:3:1: in model: Expected identifier, got: ");
  EXPECT_EQ(load_error("model { mowe { encoder_layers: [1, x] } }"),
            "x.textproto:1:36: model.mowe.encoder_layers: Expected integer, got: x");
}

TEST(ConfigLoad, UnknownFieldNamesPathAndKnownFields) {
  std::string message = load_error("model {\n  d_model: 16\n  d_modle: 16\n}\n");
  EXPECT_TRUE(starts_with(message,
                          "x.textproto:3:3: unknown field 'model.d_modle' (did you mean "
                          "'d_model'? known fields of model: d_model, num_heads, d_kv,"))
      << message;
  EXPECT_TRUE(starts_with(load_error("trainin { steps: 1 }"),
                          "x.textproto:1:1: unknown field 'trainin' (did you mean 'training'? "
                          "known fields of the top level: model, data, parallel, training)"));
}

TEST(ConfigLoad, UnknownFieldInsideRepeatedMessageNamesTheElement) {
  std::string message =
      load_error("model { mowe {\n  buckets { num_blocks: 1 }\n  buckets { nope: 1 }\n} }");
  EXPECT_TRUE(starts_with(message,
                          "x.textproto:3:13: unknown field 'model.mowe.buckets[1].nope' "
                          "(known fields of model.mowe.buckets[1]: num_routing_ids,"))
      << message;
}

TEST(ConfigLoad, BadEnumInFileListsTheValues) {
  EXPECT_EQ(load_error("training {\n  optimizer: SGD\n}"),
            "x.textproto:2:14: training.optimizer: 'SGD' is not one of ADAFACTOR, ADAMW");
  EXPECT_EQ(load_error("parallel { device: GPU alltoall: FLAT }"),
            "x.textproto:1:20: parallel.device: 'GPU' is not one of AUTO, CPU, CUDA, SIMULATED");
}

TEST(ConfigLoad, OutOfRangeValueNamesFieldBoundAndLine) {
  EXPECT_EQ(load_error("model {\n  d_model: 0\n}\n"),
            "x.textproto:2:3: model.d_model = 0 is out of range: must be >= 1");
  EXPECT_EQ(load_error("data { noise_density: 1.5 }"),
            "x.textproto:1:8: data.noise_density = 1.5 is out of range: must be > 0 and < 1");
}

TEST(ConfigLoad, OutOfRangeElementOfRepeatedMessage) {
  EXPECT_EQ(tiny_error({"model.mowe.buckets[1].num_blocks=0"}),
            "--set model.mowe.buckets[1].num_blocks=0: model.mowe.buckets[1].num_blocks = 0 is "
            "out of range: must be >= 1");
  EXPECT_EQ(load_error("model { mowe { buckets {} buckets { expert_d_ff: -2 } } }"),
            "x.textproto:1:37: model.mowe.buckets[1].expert_d_ff = -2 is out of range: must be "
            ">= 1");
}

TEST(ConfigLoad, MissingFileSaysToCheckThePath) {
  std::string message = error_of([] { load_config("configs/no_such.textproto", {}); });
  EXPECT_EQ(message,
            "configs/no_such.textproto: no such config file (check the path; the shipped configs "
            "are in configs/)");
  EXPECT_TRUE(starts_with(error_of([] { load_config("", {}); }), "no config file given"));
}

TEST(ConfigValidate, NamesFieldAndRangeWithoutASource) {
  Config config;
  config.mutable_model()->set_d_model(0);
  EXPECT_EQ(error_of([&] { validate(config); }),
            "config: model.d_model = 0 is out of range: must be >= 1");
  config.mutable_model()->set_d_model(8);
  config.mutable_training()->set_learning_rate(std::numeric_limits<double>::quiet_NaN());
  EXPECT_EQ(error_of([&] { validate(config); }),
            "config: training.learning_rate = nan is not a finite number");
}

TEST(ConfigValidate, MoweLayerIndicesMustBeBlocksAndUnique) {
  EXPECT_EQ(tiny_error({"model.mowe.encoder_layers=[0, 2]"}),
            "--set model.mowe.encoder_layers=[0, 2]: model.mowe.encoder_layers[1] = 2 is not a "
            "block index: the encoder has 2 blocks (0..1)");
  EXPECT_EQ(tiny_error({"model.mowe.decoder_layers=[1,1]"}),
            "--set model.mowe.decoder_layers=[1,1]: model.mowe.decoder_layers[1] = 1 is listed "
            "twice");
}

// runtime/config checks the schema's bounds and only the rules it is given; each module's list
// finds the violations of its own fields.
TEST(ConfigValidate, GenericLoadingRunsOnlyTheRulesItIsGiven) {
  const std::vector<std::string> twice = {"model.mowe.decoder_layers=[1,1]"};
  const Config c = config::load_config_text(tiny_text(), "tiny.textproto", twice, {});
  EXPECT_EQ(error_of([] {
              config::load_config_text(tiny_text(), "tiny.textproto", {"model.d_model=0"}, {});
            }),
            "--set model.d_model=0: model.d_model = 0 is out of range: must be >= 1");
  const Result found = config::find_violation(c, model::config_rules());
  ASSERT_TRUE(found);
  EXPECT_EQ(found->path, "model.mowe.decoder_layers[1]");
  EXPECT_EQ(found->message, "model.mowe.decoder_layers[1] = 1 is listed twice");
  EXPECT_FALSE(config::find_violation(c, data::config_rules()));
  EXPECT_EQ(train::find_violation(c).value_or(Violation{}).message, found->message);
}

// Validation counts spans as the loader does (568 raw tokens per 512-token example: 28 spans),
// and evaluation needs a held-out split.
TEST(ConfigValidate, SentinelsAndEvaluationFollowTheData) {
  const std::string base = std::string(MOWE_SOURCE_DIR) + "/configs/base.textproto";
  std::string error;
  try {
    train::load_config(base, {"data.num_sentinels=27"});
  } catch (const Error& e) {
    error = e.what();
  }
  EXPECT_EQ(error,
            "--set data.num_sentinels=27: data.num_sentinels = 27 is too few: data.input_length "
            "512 at noise_density 0.15 and mean_noise_span_length 3 corrupts 568 raw tokens in 28 "
            "spans, each needing its own sentinel: set data.num_sentinels to at least 28");
  EXPECT_NO_THROW(train::load_config(base, {"data.num_sentinels=28"}));
  EXPECT_EQ(tiny_error({"data.validation_fraction=0"}),
            "tiny.textproto:53:3: training.eval_every = 5 evaluates on the held-out split, but "
            "data.validation_fraction = 0 holds nothing out: set training.eval_every "
            "to 0, or hold out a share");
}

// Sizes that would overflow a 32-bit expert index (a segfault in the routing table before) or
// any size computation are refused naming the fields.
TEST(ConfigValidate, ExpertCountsMustFit) {
  EXPECT_EQ(tiny_error({"model.mowe.buckets[1].experts_per_block=1073741824"}),
            "--set model.mowe.buckets[1].experts_per_block=1073741824: model.mowe.buckets[1] has "
            "num_blocks (2) x experts_per_block (1073741824) = 2147483648 experts; at most "
            "2147483647 fit a 32-bit expert index");
  const std::string huge =
      tiny_error({"model.mowe.buckets[1].experts_per_block=1000000000",
                  "model.mowe.buckets[1].expert_d_ff=1000000000", "model.d_model=65536"});
  EXPECT_NE(huge.find("model.mowe.buckets[1] would hold about"), std::string::npos) << huge;
  EXPECT_NE(huge.find("beyond any machine"), std::string::npos) << huge;
}

TEST(ConfigValidate, BucketRules) {
  EXPECT_EQ(tiny_error({"model.mowe.buckets=[]"}),
            "--set model.mowe.buckets=[]: model.mowe.buckets is empty, but MoWE layers are "
            "configured (model.mowe.encoder_layers/decoder_layers): add at least one bucket");
  EXPECT_EQ(tiny_error({"model.mowe.buckets[1].num_routing_ids=200"}),
            "--set model.mowe.buckets[1].num_routing_ids=200: model.mowe.buckets hold 228 "
            "routing ids, but model.mowe.routing_vocab_size (160) minus "
            "model.mowe.num_unrouted_ids (4) leaves 156");
  EXPECT_EQ(tiny_error({"model.mowe.buckets[0].num_routing_ids=0"}),
            "--set model.mowe.buckets[0].num_routing_ids=0: model.mowe.buckets[0].num_routing_ids "
            "= 0 (all remaining ids) is only allowed on the last bucket");
  EXPECT_EQ(tiny_error({"model.mowe.num_unrouted_ids=160"}),
            "--set model.mowe.num_unrouted_ids=160: model.mowe.num_unrouted_ids = 160 must be < "
            "model.mowe.routing_vocab_size (160)");
}

TEST(ConfigValidate, VocabularyAndSpanRules) {
  EXPECT_EQ(tiny_error({"model.vocab_size=32"}),
            "--set model.vocab_size=32: model.vocab_size = 32 must be >= data.sp_vocab_size (64): "
            "the embedding needs a row for every piece");
  EXPECT_EQ(tiny_error({"data.input_length=512"}),
            "tiny.textproto:31:3: data.num_sentinels = 8 is too few: data.input_length 512 at "
            "noise_density 0.15 and mean_noise_span_length 3 corrupts 568 raw tokens in 28 spans, "
            "each needing its own sentinel: set data.num_sentinels to at least 28");
  // The noise mask alternates kept and corrupted spans: dense short spans have no layout.
  EXPECT_EQ(tiny_error({"data.noise_density=0.9", "data.mean_noise_span_length=1"}),
            "--set data.noise_density=0.9: data.noise_density = 0.9 with "
            "data.mean_noise_span_length 1 corrupts 28 of 31 raw tokens in 28 spans, but the spans "
            "must be separated by uncorrupted tokens and only 3 remain: lower data.noise_density "
            "or raise data.mean_noise_span_length");
  EXPECT_EQ(tiny_error({"data.corpus=TEXT"}),
            "tiny.textproto:27:1: data.corpus_path is empty, but data.corpus = TEXT reads from it");
}

// Streaming and held-out files: settings that would be silently ignored are refused by field.
TEST(ConfigValidate, StreamingRules) {
  const std::vector<std::string> jsonl = {"data.corpus=JSONL", "data.corpus_path=/c/*.jsonl.gz"};
  auto with = [&](std::vector<std::string> extra) {
    extra.insert(extra.begin(), jsonl.begin(), jsonl.end());
    return tiny_error(extra);
  };
  EXPECT_EQ(with({"data.streaming=true"}),
            "tiny.textproto:53:3: training.eval_every = 5 evaluates on held-out documents, but a "
            "streaming corpus is never split: set data.validation_path, or training.eval_every "
            "to 0");
  EXPECT_EQ(with({"data.streaming=true", "training.eval_every=0", "data.validation_fraction=0.1"}),
            "--set data.validation_fraction=0.1: data.validation_fraction = 0.1, but a streaming "
            "corpus is never split: remove it and put held-out documents in "
            "data.validation_path");
  EXPECT_EQ(with({"data.streaming=true", "training.eval_every=0", "data.task=WORDNET_QA"}),
            "--set data.streaming=true: data.streaming serves data.task = SPAN_CORRUPTION only, "
            "not WORDNET_QA");
  EXPECT_EQ(tiny_error({"data.streaming=true"}),
            "--set data.streaming=true: data.streaming reads TEXT or JSONL files, but data.corpus "
            "= WORDNET");
  EXPECT_EQ(with({"data.stream_shards=4"}),
            "--set data.stream_shards=4: data.stream_shards = 4 only applies to data.streaming: "
            "remove it or set data.streaming: true");
  EXPECT_EQ(with({"data.loader_threads=2"}),
            "--set data.loader_threads=2: data.loader_threads = 2 only applies to "
            "data.streaming (an in-memory corpus is tokenized at start-up on every core): remove "
            "it or set data.streaming: true");
  EXPECT_EQ(with({"data.validation_path=/c/val.jsonl", "data.validation_fraction=0.1"}),
            "--set data.validation_fraction=0.1: data.validation_fraction = 0.1 holds out a share "
            "of the corpus, but data.validation_path = \"/c/val.jsonl\" names the held-out "
            "files: set one of them");
  EXPECT_EQ(tiny_error({"data.validation_path=/c/val.jsonl"}),
            "--set data.validation_path=/c/val.jsonl: data.validation_path = \"/c/val.jsonl\" is "
            "read like corpus_path, but data.corpus = WORDNET reads no file: remove it");
  // What these rules allow: streaming with held-out files, or without evaluation.
  const std::string tiny = read_file(kSourceDir / "configs/tiny.textproto");
  for (const std::vector<std::string>& ok :
       {std::vector<std::string>{"data.streaming=true", "data.validation_path=/c/val.jsonl",
                                 "data.stream_shards=3", "data.loader_threads=2"},
        std::vector<std::string>{"data.streaming=true", "training.eval_every=0"},
        std::vector<std::string>{"data.validation_path=/c/val.jsonl"}}) {
    std::vector<std::string> all = jsonl;
    all.insert(all.end(), ok.begin(), ok.end());
    EXPECT_NO_THROW(load_config_text(tiny, "tiny.textproto", all)) << ok[0];
  }
}

TEST(ConfigValidate, WordnetQaNeedsWordnetAndATargetLength) {
  EXPECT_EQ(tiny_error({"data.task=WORDNET_QA"}),
            "tiny.textproto:27:1: data.target_length = 0, but data.task = WORDNET_QA needs it "
            "set: the padded answer length in tokens, EOS included (e.g. 8)");
  EXPECT_EQ(tiny_error({"data.task=WORDNET_QA", "data.target_length=8", "data.corpus=JSONL",
                        "data.corpus_path=c.jsonl"}),
            "--set data.task=WORDNET_QA: data.task = WORDNET_QA asks about WordNet synsets, but "
            "data.corpus = JSONL: set data.corpus to WORDNET");
  EXPECT_NO_THROW(load_config_text(tiny_text(), "tiny.textproto",
                                   {"data.task=WORDNET_QA", "data.target_length=8"}));
}

TEST(ConfigValidate, PositionBucketsNeedALargerMaxDistance) {
  EXPECT_EQ(tiny_error({"model.relative_attention_max_distance=4"}),
            "--set model.relative_attention_max_distance=4: "
            "model.relative_attention_max_distance = 4 must be > "
            "model.relative_attention_num_buckets / 2 (4)");
}

TEST(ConfigOverride, BadEnumListsTheValues) {
  EXPECT_EQ(tiny_error({"training.optimizer=SGD"}),
            "--set training.optimizer=SGD: 'SGD' is not one of ADAFACTOR, ADAMW");
}

TEST(ConfigOverride, UnknownPathNamesTheField) {
  std::string message = tiny_error({"model.nope=1"});
  EXPECT_TRUE(starts_with(message,
                          "--set model.nope=1: unknown field 'model.nope' (known fields "
                          "of model: d_model,"))
      << message;
  EXPECT_TRUE(starts_with(tiny_error({"model.mowe.bukets[0].num_blocks=1"}),
                          "--set model.mowe.bukets[0].num_blocks=1: unknown field "
                          "'model.mowe.bukets' (did you mean 'buckets'?"));
}

TEST(ConfigOverride, MalformedAssignments) {
  EXPECT_EQ(tiny_error({"model.d_model"}), "--set model.d_model: expected path.to.field=value");
  EXPECT_EQ(tiny_error({"model.d_model=abc"}), "--set model.d_model=abc: 'abc' is not an int32");
  EXPECT_EQ(tiny_error({"model.d_model=3000000000"}),
            "--set model.d_model=3000000000: '3000000000' does not fit in an int32");
  EXPECT_EQ(tiny_error({"model.mowe.case_variants=yes"}),
            "--set model.mowe.case_variants=yes: 'yes' is not a bool (true or false)");
  EXPECT_EQ(tiny_error({"model.d_model.x=1"}),
            "--set model.d_model.x=1: 'model.d_model' is a value (int32), not a message: it has no "
            "field 'x'");
  EXPECT_EQ(tiny_error({"model.mowe.buckets.num_blocks=1"}),
            "--set model.mowe.buckets.num_blocks=1: 'model.mowe.buckets' is a list: name an "
            "element, as model.mowe.buckets[0]");
  EXPECT_EQ(tiny_error({"model.mowe.buckets[5].num_blocks=1"}),
            "--set model.mowe.buckets[5].num_blocks=1: model.mowe.buckets has 2 elements: index 5 "
            "is past the end ([2] appends)");
  EXPECT_TRUE(starts_with(tiny_error({"model.mowe.buckets=[{}, {nope: 1}]"}),
                          "--set model.mowe.buckets=[{}, {nope: 1}]: unknown field "
                          "'model.mowe.buckets[1].nope' (known fields of model.mowe.buckets[1]: "));
  EXPECT_EQ(tiny_error({"model.mowe.buckets[0]={num_blocks: x}"}),
            "--set model.mowe.buckets[0]={num_blocks: x}: model.mowe.buckets[0].num_blocks: "
            "Expected integer, got: x");
  EXPECT_EQ(tiny_error({"model.mowe={expert_activation: RELU}"}),
            "--set model.mowe={expert_activation: RELU}: model.mowe.expert_activation: 'RELU' is "
            "not one of GELU, GATED_GELU");
}

TEST(ConfigOverride, NestedScalarsAndListsTakeEffect) {
  Config c = load_config_text(
      tiny_text(), "tiny.textproto",
      {"model.d_model=32", "training.learning_rate=2e-3", "model.mowe.encoder_layers=[0, 1]",
       "model.mowe.decoder_layers=[]", "model.mowe.buckets[0].num_blocks=4",
       "parallel.alltoall=HIERARCHICAL", "data.tokenizer_model=\"a b\""});
  EXPECT_EQ(c.model().d_model(), 32);
  EXPECT_DOUBLE_EQ(c.training().learning_rate(), 2e-3);
  ASSERT_EQ(c.model().mowe().encoder_layers_size(), 2);
  EXPECT_EQ(c.model().mowe().encoder_layers(0), 0);
  EXPECT_EQ(c.model().mowe().encoder_layers(1), 1);
  EXPECT_EQ(c.model().mowe().decoder_layers_size(), 0);
  EXPECT_EQ(c.model().mowe().buckets(0).num_blocks(), 4);
  EXPECT_EQ(c.model().mowe().buckets(0).experts_per_block(), 14);  // untouched
  EXPECT_EQ(c.parallel().alltoall(), ParallelConfig::HIERARCHICAL);
  EXPECT_EQ(c.data().tokenizer_model(), "a b");
}

TEST(ConfigOverride, ListElementsAppendAndWholeMessages) {
  Config c = load_config_text(
      tiny_text(), "tiny.textproto",
      {"model.mowe.encoder_layers[0]=0", "model.mowe.encoder_layers[1]=1",
       "model.mowe.buckets=[{num_routing_ids: 10 num_blocks: 2}, {num_routing_ids: 20}]",
       "model.mowe.buckets[2]={expert_d_ff: 4}"});
  EXPECT_EQ(c.model().mowe().encoder_layers_size(), 2);
  EXPECT_EQ(c.model().mowe().encoder_layers(1), 1);
  ASSERT_EQ(c.model().mowe().buckets_size(), 3);
  EXPECT_EQ(c.model().mowe().buckets(0).num_blocks(), 2);
  EXPECT_EQ(c.model().mowe().buckets(1).num_routing_ids(), 20);
  EXPECT_FALSE(c.model().mowe().buckets(1).has_num_blocks());
  EXPECT_EQ(c.model().mowe().buckets(2).expert_d_ff(), 4);
}

TEST(ConfigText, ResolvedTextHasEveryDefaultAndRoundTrips) {
  Config tiny = load_config_text(tiny_text(), "tiny.textproto");
  std::string text = to_text(tiny);
  EXPECT_NE(text.find("d_model: 16"), std::string::npos) << text;
  EXPECT_NE(text.find("layer_norm_epsilon: 1e-06"), std::string::npos) << text;
  EXPECT_NE(text.find("optimizer: ADAMW"), std::string::npos) << text;
  EXPECT_NE(text.find("encoder_layers: [1]"), std::string::npos) << text;
  Config again = load_config_text(text, "resolved");
  EXPECT_EQ(again.SerializeAsString(), with_defaults(tiny).SerializeAsString());
}

// Every leaf of the schema, as help_text writes its path.
void collect_leaves(const google::protobuf::Descriptor* type, const std::string& prefix,
                    std::vector<std::string>* out) {
  for (int i = 0; i < type->field_count(); ++i) {
    const auto* f = type->field(i);
    std::string path = prefix + f->name();
    if (f->message_type())
      collect_leaves(f->message_type(), path + (f->is_repeated() ? "[i]." : "."), out);
    else
      out->push_back(path);
  }
}

TEST(ConfigHelp, ListsEveryLeafFieldWithDefaultAndRange) {
  std::string help = help_text("prog", "--config PATH");
  EXPECT_TRUE(starts_with(help, "Usage: prog --config PATH\n"));
  std::vector<std::string> leaves;
  collect_leaves(Config::descriptor(), "", &leaves);
  EXPECT_GT(leaves.size(), 60u);
  for (const std::string& leaf : leaves)
    EXPECT_NE(help.find("--set " + leaf + "="), std::string::npos) << leaf;
  EXPECT_NE(help.find("--set model.d_model=<int32>  (default 768; >= 1)\n"), std::string::npos);
  EXPECT_NE(help.find("--set training.optimizer=<ADAFACTOR|ADAMW>  (default ADAFACTOR)\n"),
            std::string::npos);
  EXPECT_NE(help.find("--set model.mowe.encoder_layers=[<int32>, ...]  (each >= 0)\n"),
            std::string::npos);
}

TEST(ConfigHelp, ReferenceDocIsUpToDate) {
  std::string reference = reference_markdown();
  EXPECT_NE(reference.find("| `model.mowe.buckets[i].num_blocks` | int32 | `1` | >= 1 |"),
            std::string::npos);
  EXPECT_TRUE(reference == read_file(kSourceDir / "docs/configuration.md"))
      << "docs/configuration.md is stale; run: "
         "build/bin/mowe_config --reference > docs/configuration.md";
}

std::vector<char*> argv_of(std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  return argv;
}

TEST(ConfigFlags, ParsesCommonAndProgramFlags) {
  std::vector<std::string> args = {"prog",
                                   "--config",
                                   "c.textproto",
                                   "--set",
                                   "model.d_model=8",
                                   "--set=a.b=[1,2]",
                                   "--log-level",
                                   "debug",
                                   "--log-all-ranks",
                                   "--dry-run",
                                   "--out=o.bin",
                                   "input",
                                   "--",
                                   "--set"};
  auto argv = argv_of(args);
  CommonFlags f =
      parse_common_flags(int(argv.size()), argv.data(), {"--dry-run", "--describe"}, {"--out"});
  EXPECT_EQ(f.config_path, "c.textproto");
  EXPECT_EQ(f.overrides, (std::vector<std::string>{"model.d_model=8", "a.b=[1,2]"}));
  EXPECT_EQ(f.log_level, "debug");
  EXPECT_TRUE(f.log_all_ranks);
  EXPECT_FALSE(f.help);
  EXPECT_TRUE(f.has("--dry-run"));
  EXPECT_FALSE(f.has("--describe"));
  EXPECT_EQ(f.values.at("--out"), "o.bin");
  EXPECT_EQ(f.positional, (std::vector<std::string>{"input", "--set"}));
}

TEST(ConfigFlags, UnknownOrIncompleteFlagsAreNamed) {
  auto parse_error = [](std::vector<std::string> args) {
    auto argv = argv_of(args);
    return error_of([&] { parse_common_flags(int(argv.size()), argv.data()); });
  };
  EXPECT_EQ(parse_error({"prog", "--bogus"}),
            "unknown flag '--bogus' (run with --help for the flags)");
  EXPECT_EQ(parse_error({"prog", "--config"}), "flag --config needs a value");
  EXPECT_EQ(parse_error({"prog", "--help=yes"}), "flag --help takes no value");
  EXPECT_EQ(parse_error({"prog", "--log-level", "loud"}),
            "flag --log-level: 'loud' is not one of trace, debug, info, warn, error, off");
}

}  // namespace
}  // namespace mowe::config
