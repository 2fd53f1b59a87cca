#include "tests/bench/step_dump.h"

#include <google/protobuf/util/json_util.h>
#include <mpi.h>

#include <map>

#include "runtime/check.h"
#include "runtime/safetensors/safetensors.h"

namespace mowe::bench {
namespace {

// Rank-order concatenation on rank 0 (every rank holds the same number of elements).
template <typename T>
std::vector<T> gather(const std::vector<T>& mine, MPI_Datatype type, int rank, int size) {
  std::vector<T> all(rank == 0 ? mine.size() * size : 0);
  MPI_Gather(mine.data(), static_cast<int>(mine.size()), type, all.data(),
             static_cast<int>(mine.size()), type, 0, MPI_COMM_WORLD);
  return all;
}

// Each token's bucket and expert as the model routes it: padding (routing id -1), unrouted and
// deactivated ids get -1 in both.
void route(const std::vector<int32_t>& routing_ids, const model::RoutingTable* table,
           int deactivate_above, std::vector<int32_t>* bucket, std::vector<int32_t>* expert) {
  bucket->assign(routing_ids.size(), -1);
  expert->assign(routing_ids.size(), -1);
  if (table == nullptr) return;
  for (size_t i = 0; i < routing_ids.size(); ++i) {
    const int32_t id = routing_ids[i];
    if (id < 0 || (deactivate_above > 0 && id > deactivate_above)) continue;
    (*bucket)[i] = table->bucket_of(id);
    (*expert)[i] = table->expert_of(id);
  }
}

}  // namespace

std::string config_json(const config::Config& config) {
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string json;
  const auto status = google::protobuf::util::MessageToJsonString(config, &json, options);
  MOWE_CHECK(status.ok(), "config to JSON: {}", status.ToString());
  return json;
}

GlobalBatch gather_batch(const data::Batch& b, const model::RoutingTable* table,
                         int deactivate_above, comm::Communicator& comm) {
  const int rank = comm.rank(), size = comm.size();
  std::vector<int32_t> enc_bucket, enc_expert, dec_bucket, dec_expert;
  route(b.encoder_routing_ids, table, deactivate_above, &enc_bucket, &enc_expert);
  route(b.decoder_routing_ids, table, deactivate_above, &dec_bucket, &dec_expert);
  GlobalBatch g;
  g.batch_size = b.batch_size * size;
  g.input_length = b.input_length;
  g.target_length = b.target_length;
  const auto i32 = [&](const std::vector<int32_t>& v) {
    return gather(v, MPI_INT32_T, rank, size);
  };
  g.enc_ids = i32(b.encoder_input_ids);
  g.enc_mask = i32(b.encoder_mask);
  g.enc_bucket = i32(enc_bucket);
  g.enc_expert = i32(enc_expert);
  g.dec_ids = i32(b.decoder_input_ids);
  g.dec_mask = i32(b.decoder_mask);
  g.dec_bucket = i32(dec_bucket);
  g.dec_expert = i32(dec_expert);
  g.targets = i32(b.targets);
  g.loss_weights = gather(b.loss_weights, MPI_FLOAT, rank, size);
  return g;
}

void write_batches(const std::string& path, const std::vector<GlobalBatch>& batches,
                   const config::Config& config, const model::DispatchPlan* plan, int world_size) {
  using safetensors::DType;
  std::vector<safetensors::TensorSpec> specs;
  std::vector<std::pair<const void*, uint64_t>> data;
  std::vector<double> flops, tokens;
  for (const GlobalBatch& g : batches) {
    flops.push_back(g.model_flops);
    tokens.push_back(static_cast<double>(g.real_tokens));
  }
  const auto add = [&](const std::string& name, DType dtype, std::vector<int64_t> shape,
                       const void* p) {
    specs.push_back({name, dtype, std::move(shape)});
    data.emplace_back(p, specs.back().bytes());
  };
  const int64_t n = static_cast<int64_t>(batches.size());
  add("model_flops", DType::F64, {n}, flops.data());
  add("real_tokens", DType::F64, {n}, tokens.data());
  for (int64_t i = 0; i < n; ++i) {
    const GlobalBatch& g = batches[i];
    const std::vector<int64_t> enc{g.batch_size, g.input_length},
        dec{g.batch_size, g.target_length};
    const std::string p = "b" + std::to_string(i) + ".";
    add(p + "enc_ids", DType::I32, enc, g.enc_ids.data());
    add(p + "enc_mask", DType::I32, enc, g.enc_mask.data());
    add(p + "enc_bucket", DType::I32, enc, g.enc_bucket.data());
    add(p + "enc_expert", DType::I32, enc, g.enc_expert.data());
    add(p + "dec_ids", DType::I32, dec, g.dec_ids.data());
    add(p + "dec_mask", DType::I32, dec, g.dec_mask.data());
    add(p + "dec_bucket", DType::I32, dec, g.dec_bucket.data());
    add(p + "dec_expert", DType::I32, dec, g.dec_expert.data());
    add(p + "targets", DType::I32, dec, g.targets.data());
    add(p + "loss_weights", DType::F32, dec, g.loss_weights.data());
  }
  std::vector<std::vector<int32_t>> block_rank;  // kept until the writer has copied them
  block_rank.reserve(plan != nullptr ? plan->num_buckets() : 0);
  for (int b = 0; plan != nullptr && b < plan->num_buckets(); ++b) {
    const int blocks = config.model().mowe().buckets(b).num_blocks();
    auto& ranks = block_rank.emplace_back();
    for (int32_t k = 0; k < blocks; ++k) ranks.push_back(plan->owners(b, k).front());
    add("bucket" + std::to_string(b) + ".block_rank", DType::I32, {blocks}, ranks.data());
  }
  const std::map<std::string, std::string> metadata{{"config", config_json(config)},
                                                    {"batches", std::to_string(n)},
                                                    {"world_size", std::to_string(world_size)}};
  safetensors::Writer out(path, specs, metadata);
  for (const auto& [p, bytes] : data) out.append(p, bytes);
  out.finish();
}

void write_parameters(const std::string& path, const model::ParameterStore& store,
                      const config::Config& config) {
  MOWE_CHECK(store.dtype() == DType::F32, "f32 parameters expected");
  std::vector<safetensors::TensorSpec> specs;
  for (const auto& p : store.all()) {
    const Tensor& t = p->value.tensor();
    std::vector<int64_t> shape;
    for (int d = 0; d < t.shape.ndim(); ++d) shape.push_back(t.shape[d]);
    specs.push_back({p->name, safetensors::DType::F32, shape});
  }
  safetensors::Writer out(path, specs, {{"config", config_json(config)}});
  for (const auto& p : store.all()) out.append(p->value.tensor().data, p->value.tensor().nbytes());
  out.finish();
}

}  // namespace mowe::bench
