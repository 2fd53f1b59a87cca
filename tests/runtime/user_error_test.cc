// The two kinds of errors (runtime/check.h): a user's mistake, met through the real entry points
// of three modules, is a UserError whose message is one line naming the field or file with no
// trace of the source; an internal invariant still says where in the source it failed.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "data/corpus.h"
#include "model/dispatch_plan.h"
#include "model/routing_table.h"
#include "runtime/check.h"
#include "runtime/config/config.h"

namespace mowe {
namespace {

namespace fs = std::filesystem;

struct Thrown {
  bool user = false;  // a UserError, not merely an Error
  std::string message;
};

template <typename F>
Thrown thrown_by(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return {dynamic_cast<const UserError*>(&e) != nullptr, e.what()};
  }
  ADD_FAILURE() << "no mowe::Error thrown";
  return {};
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// A user error: one line, naming `names`, with no expression, check banner or source location.
void expect_user_error(const Thrown& t, const std::vector<std::string>& names) {
  EXPECT_TRUE(t.user) << "not a UserError: " << t.message;
  EXPECT_FALSE(t.message.empty());
  EXPECT_FALSE(contains(t.message, "\n")) << t.message;
  for (const char* source : {".cc:", ".h:", "check failed", "failed on rank", "/runtime/", "/data/",
                             "/model/", "/launch/", "/comm/"})
    EXPECT_FALSE(contains(t.message, source)) << "'" << source << "' in: " << t.message;
  for (const std::string& name : names)
    EXPECT_TRUE(contains(t.message, name)) << "'" << name << "' not in: " << t.message;
}

config::MoweConfig two_buckets(int64_t routing_vocab_size) {
  config::MoweConfig c;
  c.set_routing_vocab_size(routing_vocab_size);
  c.set_num_unrouted_ids(2);
  config::BucketConfig* b0 = c.add_buckets();
  b0->set_num_routing_ids(4), b0->set_num_blocks(2), b0->set_experts_per_block(2);
  config::BucketConfig* b1 = c.add_buckets();
  b1->set_num_routing_ids(0), b1->set_num_blocks(2), b1->set_experts_per_block(1);
  return c;
}

TEST(UserError, ConfigFieldOutOfRangeNamesTheFieldAndWhere) {
  const Thrown t = thrown_by(
      [] { config::load_config_text("training { global_batch_size: 0 }", "run.textproto", {}, {}); });
  expect_user_error(t, {"run.textproto:1:", "training.global_batch_size", "0"});
}

TEST(UserError, EmptyCorpusFileNamesTheFile) {
  const fs::path dir = fs::temp_directory_path() / fmt::format("mowe_user_error_{}", ::getpid());
  fs::create_directories(dir);
  const std::string path = (dir / "corpus.txt").string();
  std::ofstream(path) << "\n  \n";
  config::DataConfig d;
  d.set_corpus(config::DataConfig::TEXT);
  d.set_corpus_path(path);
  const Thrown t = thrown_by([&] { data::read_corpus(d); });
  fs::remove_all(dir);
  expect_user_error(t, {path, "holds no document"});
}

TEST(UserError, RoutingVocabularyOfAnotherSizeNamesTheField) {
  const std::vector<int64_t> frequencies(12, 5);  // a vocabulary of 12 ids for a config of 16
  const Thrown t = thrown_by([&] { model::RoutingTable::build(two_buckets(16), frequencies); });
  expect_user_error(t, {"12 routing-id frequencies", "model.mowe.routing_vocab_size is 16"});
}

TEST(UserError, WorldSizeThePlanCannotServeNamesTheBucketField) {
  model::PlanInputs in;
  in.world_size = 3;  // neither divides nor is a multiple of 2 blocks
  in.frequencies.assign(16, 5);
  const Thrown t = thrown_by([&] { model::DispatchPlan::build(two_buckets(16), in); });
  expect_user_error(t, {"world size 3", "model.mowe.buckets[0].num_blocks = 2"});
}

TEST(UserError, RequireThrowsTheMessageAlone) {
  const Thrown t = thrown_by([] { MOWE_REQUIRE(1 + 1 == 3, "data.seed = {}: pick another", 7); });
  EXPECT_TRUE(t.user);
  EXPECT_EQ(t.message, "data.seed = 7: pick another");
}

TEST(InternalCheck, StillCarriesExpressionFileAndLine) {
  const model::RoutingTable table =
      model::RoutingTable::build(two_buckets(16), std::vector<int64_t>(16, 5));
  const Thrown t = thrown_by([&] { table.bucket_of(16); });
  EXPECT_FALSE(t.user) << t.message;
  EXPECT_TRUE(contains(t.message, "check failed on rank")) << t.message;
  EXPECT_TRUE(contains(t.message, "id >= 0 && id < vocab_size()")) << t.message;
  EXPECT_TRUE(contains(t.message, "routing_table.cc:")) << t.message;
}

}  // namespace
}  // namespace mowe
