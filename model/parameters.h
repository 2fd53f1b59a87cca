// Named model parameters with their gradients. Element i of a parameter is initialised from a
// counter-based draw keyed by (seed, name, global index), so the initial model is the same
// whatever the world size, the order of registration, or which rows (expert shards) a rank holds.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "runtime/memory.h"
#include "runtime/optimizer.h"

namespace mowe::comm {
class Communicator;
}

namespace mowe::model {

// Dense parameters are replicated and allreduced; expert parameters are sharded by block.
enum class ParamKind : uint8_t { Dense, Expert };

// The initial distribution of a parameter, with `stddev` the standard deviation the drawn values
// actually have, as T5X's variance_scaling initialisers:
//   Normal           N(0, stddev^2)
//   TruncatedNormal  a standard normal truncated to [-2, 2], times stddev / 0.8796..., the
//                    standard deviation of that truncated normal (kTruncatedNormalStd): values
//                    lie in +-2.27 stddev and have standard deviation stddev
//   Uniform          uniform in [-sqrt(3) stddev, sqrt(3) stddev]
struct Init {
  enum Kind : uint8_t { Zeros, Ones, Normal, TruncatedNormal, Uniform } kind = Zeros;
  double stddev = 0.0;
};

// Standard deviation of a standard normal truncated to [-2, 2] (the constant T5X and JAX's
// variance_scaling divide by).
inline constexpr double kTruncatedNormalStd = 0.87962566103423978;

// Which rows (dim 0) of the logical parameter a tensor holds: [first, first + rows), or an
// explicit list (a rank's expert blocks need not be contiguous).
struct RowMap {
  int64_t first = 0;
  std::vector<int64_t> rows;  // global row of each local row; empty = contiguous from `first`
  RowMap(int64_t first_row = 0) : first(first_row) {}  // NOLINT: a row offset reads naturally
  explicit RowMap(std::vector<int64_t> list) : rows(std::move(list)) {}
  int64_t global(int64_t local) const { return rows.empty() ? first + local : rows[local]; }
  bool operator==(const RowMap&) const = default;
};

// How a parameter is spread over the ranks: what the gradient norm, the replica reduction and the
// checkpoint writer need to know, set once by the job that shards the model (every field keeps
// its one-process meaning until then: the whole tensor, held once, written by this process).
struct Sharding {
  Shape global_shape;     // the logical parameter; rows (dim 0) indexed by RowMap::global
  int bucket = -1;        // expert bucket, -1 for dense parameters
  int64_t unit_rows = 0;  // rows of one ownership unit (an expert block); 0 = the whole tensor
  int replicas = 1;       // ranks holding identical copies of these rows
  bool writer = true;     // this rank's copy is the one saved, and counted in the global norm
  comm::Communicator* replica_group = nullptr;  // over the copies; null: nothing to reduce
};

struct Parameter {
  std::string name;  // "encoder.block1.attention.q"
  ParamKind kind = ParamKind::Dense;
  Init init;
  bool trainable = true;  // false: no gradient buffer (frozen experts)
  RowMap rows;            // the rows of the logical parameter this tensor holds
  Sharding sharding;      // global shape == value's shape until a job shards the parameter
  Buffer value;
  Buffer grad;  // empty when !trainable
  // Trainable expert parameters: the rows (experts) whose gradient this step wrote, so zeroing,
  // the norm and the optimizer visit those only. Disabled (all rows) for replicated shards.
  TouchedRows touched;
};

class ParameterStore {
 public:
  ParameterStore(DeviceAllocator& allocator, DType dtype, uint64_t seed);

  // Registers and initialises a parameter; names are unique.
  // A non-trivial `rows` registers a shard: those rows of the logical parameter.
  Parameter& add(const std::string& name, Shape shape, ParamKind kind, Init init,
                 bool trainable = true, RowMap rows = {});
  Parameter& get(const std::string& name);
  const Parameter& get(const std::string& name) const;
  bool contains(const std::string& name) const { return index_.count(name) > 0; }

  // In registration order.
  const std::vector<std::unique_ptr<Parameter>>& all() const { return params_; }
  // Zeroes the gradients (of expert parameters, the touched rows) and forgets the touched rows.
  void zero_grads();
  // The trainable parameters as optimizer slots, in registration order.
  std::vector<ParamSlot> slots() const;
  int64_t count(ParamKind kind) const;  // number of scalars
  int64_t count() const { return count(ParamKind::Dense) + count(ParamKind::Expert); }
  DType dtype() const { return dtype_; }

 private:
  void initialise(Parameter& p) const;

  DeviceAllocator& allocator_;
  SlabAllocator dense_grads_;  // declared before params_: it must outlive their gradients
  DType dtype_;
  uint64_t seed_;
  std::vector<std::unique_ptr<Parameter>> params_;
  std::map<std::string, Parameter*> index_;
};

}  // namespace mowe::model
