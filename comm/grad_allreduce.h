// Data-parallel dense gradients: summed over all ranks in buckets, each bucket's allreduce
// started (non-blocking) as soon as the backward pass has finished its last gradient, so that
// communication overlaps the rest of the backward pass; finish() completes them all before the
// optimizer step.
//
// Buckets start strictly in order (bucket b only after buckets 0..b-1), so every rank issues the
// same sequence of collectives even if gradients become ready in a different order. A bucket
// whose gradients lie back to back in memory is reduced in place; otherwise its gradients are
// copied into a flat buffer and back. Nothing is scaled: the loss carries 1 / global tokens.
#pragma once

#include <cstddef>
#include <vector>

#include "comm/communicator.h"
#include "runtime/memory.h"

namespace mowe::comm {

class BucketedAllreduce {
 public:
  // grads: the dense gradients on comm.device(), in the order the backward pass finishes them
  // (reverse registration order); every rank passes the same list. Consecutive gradients of one
  // dtype share a bucket up to bucket_bytes (config parallel.grad_bucket_mb); a gradient larger
  // than that gets a bucket of its own. The tensors and comm must outlive this object.
  BucketedAllreduce(Communicator& comm, std::vector<Tensor> grads, size_t bucket_bytes);
  ~BucketedAllreduce();
  BucketedAllreduce(const BucketedAllreduce&) = delete;
  BucketedAllreduce& operator=(const BucketedAllreduce&) = delete;

  // Gradient i is final for this step: starts its bucket when that was the bucket's last one
  // (and every earlier bucket has started), and lets pending allreduces progress.
  void mark_ready(size_t i);
  // Starts the buckets not started yet (gradients never marked are taken as they are), waits for
  // all, copies flat buffers back. Afterwards every gradient holds the sum over ranks, and the
  // next step can begin with mark_ready again.
  void finish();

  size_t num_grads() const { return grads_.size(); }
  size_t num_buckets() const { return buckets_.size(); }
  size_t bucket_of(size_t grad) const { return bucket_of_[grad]; }
  bool in_place(size_t bucket) const { return !buckets_[bucket].staged; }
  size_t bucket_bytes(size_t bucket) const { return buckets_[bucket].bytes; }

 private:
  struct Bucket {
    size_t first = 0, end = 0;  // gradients [first, end)
    size_t bytes = 0;
    DType dtype = DType::F32;
    Tensor flat;          // what is reduced: the gradients themselves, or the staging buffer
    bool staged = false;  // copied through `staging` (the gradients are not contiguous)
    Buffer staging;
    size_t pending = 0;
    Request request;
  };

  void build_buckets(size_t bucket_bytes);
  void setup_flat(Bucket& bucket);
  void start_ready_buckets();
  void start(Bucket& bucket);

  Communicator& comm_;
  std::vector<Tensor> grads_;
  std::vector<size_t> bucket_of_;
  std::vector<bool> ready_;
  std::vector<Bucket> buckets_;
  size_t next_ = 0;  // the first bucket not started yet
};

}  // namespace mowe::comm
