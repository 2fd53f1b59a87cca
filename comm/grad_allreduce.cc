#include "comm/grad_allreduce.h"

#include <algorithm>

#include "comm/device_copy.h"

namespace mowe::comm {

BucketedAllreduce::BucketedAllreduce(Communicator& comm, std::vector<Tensor> grads,
                                     size_t bucket_bytes)
    : comm_(comm), grads_(std::move(grads)), ready_(grads_.size(), false) {
  MOWE_CHECK(bucket_bytes > 0, "[comm] gradient buckets of 0 bytes");
  for (size_t i = 0; i < grads_.size(); ++i) {
    const Tensor& g = grads_[i];
    MOWE_CHECK(g.device == comm.device() && g.dtype != DType::BF16 &&
                   (g.data != nullptr || g.numel() == 0),
               "[comm] gradient {} is {}: buckets hold f32, f64 or i32 tensors on {}", i, g.str(),
               device_name(comm.device()));
  }
  build_buckets(bucket_bytes);
}

BucketedAllreduce::~BucketedAllreduce() = default;

void BucketedAllreduce::build_buckets(size_t bucket_bytes) {
  bucket_of_.resize(grads_.size());
  for (size_t i = 0; i < grads_.size(); ++i) {
    const Tensor& g = grads_[i];
    const bool fits = !buckets_.empty() && buckets_.back().dtype == g.dtype &&
                      buckets_.back().bytes + g.nbytes() <= bucket_bytes;
    if (!fits) {
      Bucket& b = buckets_.emplace_back();
      b.first = i;
      b.dtype = g.dtype;
    }
    Bucket& b = buckets_.back();
    b.end = i + 1;
    b.bytes += g.nbytes();
    bucket_of_[i] = buckets_.size() - 1;
  }
  for (Bucket& b : buckets_) {
    setup_flat(b);
    b.pending = b.end - b.first;
  }
  // Every bucket may be in flight at once, next to a few blocking collectives.
  comm_.reserve_requests(static_cast<int>(buckets_.size()) + 4);
}

// In place when the bucket's gradients tile one range of memory (in either order: parameter
// stores allocate in registration order, the backward pass finishes in reverse).
void BucketedAllreduce::setup_flat(Bucket& b) {
  std::vector<const Tensor*> parts;
  for (size_t i = b.first; i < b.end; ++i) parts.push_back(&grads_[i]);
  std::sort(parts.begin(), parts.end(), [](const Tensor* x, const Tensor* y) {
    return std::less<const void*>()(x->data, y->data);
  });
  bool contiguous = true;
  for (size_t k = 1; k < parts.size(); ++k) {
    contiguous =
        contiguous &&
        static_cast<const char*>(parts[k - 1]->data) + parts[k - 1]->nbytes() == parts[k]->data;
  }
  const auto elems = static_cast<int64_t>(b.bytes / dtype_size(b.dtype));
  if (contiguous) {
    b.flat = Tensor(parts.front()->data, b.dtype, comm_.device(), Shape{elems});
  } else {
    b.staged = true;
    b.staging = Buffer(allocator_for(comm_.device()), Shape{elems}, b.dtype);
    b.flat = b.staging.tensor();
  }
}

void BucketedAllreduce::start(Bucket& b) {
  if (b.staged) {
    auto* dst = static_cast<char*>(b.flat.data);
    for (size_t i = b.first; i < b.end; ++i) {
      copy_bytes(comm_.device(), comm_.stream(), dst, grads_[i].data, grads_[i].nbytes());
      dst += grads_[i].nbytes();
    }
  }
  b.request = comm_.start_allreduce(b.flat, ReduceOp::Sum);
}

void BucketedAllreduce::start_ready_buckets() {
  while (next_ < buckets_.size() && buckets_[next_].pending == 0) start(buckets_[next_++]);
}

void BucketedAllreduce::mark_ready(size_t i) {
  MOWE_CHECK(i < grads_.size(), "[comm] gradient {} of {} marked ready", i, grads_.size());
  MOWE_CHECK(!ready_[i], "[comm] gradient {} marked ready twice in one step", i);
  ready_[i] = true;
  --buckets_[bucket_of_[i]].pending;
  start_ready_buckets();
  // MPI moves non-blocking collectives forward only inside MPI calls: poll the started ones.
  for (size_t b = 0; b < next_; ++b) buckets_[b].request.test();
}

void BucketedAllreduce::finish() {
  while (next_ < buckets_.size()) start(buckets_[next_++]);
  for (Bucket& b : buckets_) {
    b.request.wait();
    if (b.staged) {
      const auto* src = static_cast<const char*>(b.flat.data);
      for (size_t i = b.first; i < b.end; ++i) {
        copy_bytes(comm_.device(), comm_.stream(), grads_[i].data, src, grads_[i].nbytes());
        src += grads_[i].nbytes();
      }
    }
    b.pending = b.end - b.first;
  }
  std::fill(ready_.begin(), ready_.end(), false);
  next_ = 0;
}

}  // namespace mowe::comm
