#include "launch/convert/routing_tensors.h"

#include <filesystem>
#include <optional>

#include "data/routing_vocab.h"
#include "launch/convert/safetensors_io.h"
#include "launch/train/checkpoint_files.h"
#include "model/dispatch_plan_file.h"
#include "model/routing_table.h"
#include "runtime/check.h"

namespace mowe::convert {
namespace {

namespace ckpt = mowe::checkpoint;
namespace st = mowe::safetensors;
namespace fs = std::filesystem;

// Reads tensor data of a safetensors tensor in one piece into a vector.
template <typename T>
std::vector<T> read_all(const st::Reader& r, const st::TensorInfo& t) {
  std::vector<T> v(t.bytes() / sizeof(T));
  r.read(t, 0, v.data(), t.bytes());
  return v;
}

}  // namespace

RoutingTensors routing_tensors(const config::Config& cfg, const ckpt::CheckpointManifest& m,
                               const std::string& dir) {
  const std::string& path = cfg.data().routing_vocab();
  std::error_code ec;
  if (path.empty() || !fs::exists(path, ec))
    throw Error(fmt::format(
        "the routing table of checkpoint {} is built from its routing vocabulary '{}' "
        "(data.routing_vocab in its config), which does not exist here: pass it with --set "
        "data.routing_vocab=PATH, or export without the table (--no-routing-table)",
        dir, path));
  const data::RoutingVocab vocab = data::RoutingVocab::load(path);
  const std::optional<uint64_t> vocab_want =
      train::find_fingerprint(m, train::kFingerprintRoutingVocab);
  const uint64_t vocab_hash = model::routing_vocab_hash(vocab);
  if (vocab_want && vocab_hash != *vocab_want)
    throw Error(fmt::format(
        "routing vocabulary {} has hash {:016x}, checkpoint {} was trained with {:016x}: pass the "
        "vocabulary it was trained with (--set data.routing_vocab=PATH) or --no-routing-table",
        path, vocab_hash, dir, *vocab_want));
  const auto& mowe = cfg.model().mowe();
  const model::RoutingTable table = model::RoutingTable::build(
      mowe, model::padded_frequencies(vocab, path, mowe.routing_vocab_size()));
  const std::optional<uint64_t> table_want =
      train::find_fingerprint(m, train::kFingerprintRoutingTable);
  if (table_want && model::routing_table_hash(table) != *table_want)
    throw Error(fmt::format(
        "the routing table built from {} has hash {:016x}, checkpoint {} was trained with "
        "{:016x}: pass the routing vocabulary it was trained with (--set "
        "data.routing_vocab=PATH) or --no-routing-table",
        path, model::routing_table_hash(table), dir, *table_want));
  RoutingTensors r{table.bucket_array(), table.expert_array(), {}};
  for (const model::BucketLayout& b : table.buckets())
    r.buckets.insert(r.buckets.end(),
                     {b.num_routing_ids, b.num_blocks, b.experts_per_block, b.expert_d_ff});
  return r;
}

void check_routing_tensors(const std::vector<st::Reader>& readers,
                           const std::map<std::string, TensorSource>& where,
                           const ckpt::CheckpointManifest& m) {
  const bool any = where.count(kRoutingBucketOfId) || where.count(kRoutingExpertOfId) ||
                   where.count(kRoutingBuckets);
  if (!any) return;
  for (const char* name : {kRoutingBucketOfId, kRoutingExpertOfId, kRoutingBuckets})
    if (!where.count(name))
      throw Error(fmt::format("{}: routing-table tensor '{}' is missing (the others are there)",
                              readers[0].path(), name));
  const TensorSource& b = where.at(kRoutingBucketOfId);
  const TensorSource& e = where.at(kRoutingExpertOfId);
  const TensorSource& l = where.at(kRoutingBuckets);
  auto file_of = [&](const TensorSource& s) { return readers[s.reader].path(); };
  if (b.info->dtype != st::DType::I32 || b.info->shape.size() != 1)
    throw Error(
        fmt::format("{}: tensor '{}' must be I32 [routing ids]", file_of(b), kRoutingBucketOfId));
  if (e.info->dtype != st::DType::I32 || e.info->shape != b.info->shape)
    throw Error(fmt::format("{}: tensor '{}' must be I32 of the shape of '{}'", file_of(e),
                            kRoutingExpertOfId, kRoutingBucketOfId));
  if (l.info->dtype != st::DType::I64 || l.info->shape.size() != 2 || l.info->shape[1] != 4)
    throw Error(
        fmt::format("{}: tensor '{}' must be I64 [buckets, 4]", file_of(l), kRoutingBuckets));
  const auto bucket_of = read_all<int32_t>(readers[b.reader], *b.info);
  const auto expert_of = read_all<int32_t>(readers[e.reader], *e.info);
  const auto layout = read_all<int64_t>(readers[l.reader], *l.info);
  std::vector<model::BucketLayout> buckets;
  std::vector<std::vector<int64_t>> loads;
  for (size_t i = 0; i + 3 < layout.size(); i += 4) {
    for (size_t k = 1; k < 4; ++k)
      if (layout[i + k] < 1 || layout[i + k] > (int64_t{1} << 30))
        throw Error(fmt::format("{}: tensor '{}' row {} is not a bucket layout", file_of(l),
                                kRoutingBuckets, i / 4));
    buckets.push_back({layout[i], static_cast<int32_t>(layout[i + 1]),
                       static_cast<int32_t>(layout[i + 2]), static_cast<int32_t>(layout[i + 3])});
    loads.emplace_back(static_cast<size_t>(buckets.back().num_experts()), 0);
  }
  std::vector<int64_t> ids_in(buckets.size(), 0);
  for (size_t id = 0; id < bucket_of.size(); ++id) {
    const int32_t bk = bucket_of[id], ex = expert_of[id];
    if (bk == -1 && ex == -1) continue;
    if (bk < 0 || static_cast<size_t>(bk) >= buckets.size() || ex < 0 ||
        ex >= buckets[static_cast<size_t>(bk)].num_experts())
      throw Error(fmt::format("{}: routing id {} has bucket {} and expert {}, outside the table",
                              file_of(b), id, bk, ex));
    ++ids_in[static_cast<size_t>(bk)];
  }
  for (size_t k = 0; k < buckets.size(); ++k)
    if (ids_in[k] != buckets[k].num_routing_ids)
      throw Error(fmt::format("{}: bucket {} declares {} routing ids, {} map to it", file_of(l), k,
                              buckets[k].num_routing_ids, ids_in[k]));
  const model::RoutingTable table(buckets, bucket_of, expert_of, loads);
  const std::optional<uint64_t> want = train::find_fingerprint(m, train::kFingerprintRoutingTable);
  const uint64_t got = model::routing_table_hash(table);
  if (want && got != *want)
    throw Error(fmt::format(
        "{}: the routing-table tensors hash to {:016x}, the checkpoint's routing_table fingerprint "
        "is {:016x}: the trainer routes with its own table, so edited routing tensors would be "
        "ignored; restore them from the export",
        file_of(b), got, *want));
}

}  // namespace mowe::convert
