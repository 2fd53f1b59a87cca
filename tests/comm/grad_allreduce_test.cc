// BucketedAllreduce at 1, 2 and 4 ranks: after finish() every gradient equals a plain allreduce
// of that tensor, for buckets smaller than one gradient, of a few gradients, and of all of them;
// for contiguous (in place) and scattered (staged) gradients; whatever order the gradients are
// marked ready in; and one allreduce call per bucket.
#include <gtest/gtest.h>

#include <algorithm>

#include "comm/grad_allreduce.h"
#include "tests/comm/comm_test_util.h"

namespace mowe::test {
namespace {

using comm::BucketedAllreduce;
using comm::Collective;
using comm::ReduceOp;

// Gradient sizes (f32 elements) in backward order; the largest is 8 KiB.
const std::vector<int64_t> kSizes = {7, 300, 64, 2048, 5, 1000, 1, 513};

class GradAllreduceTest : public CommBackendTest {
 protected:
  // Scattered: one buffer per gradient. Contiguous: one buffer, gradients in registration
  // (forward) order, i.e. backward order reversed, as a parameter store lays them out.
  std::vector<Tensor> make_grads(bool contiguous) {
    std::vector<Tensor> grads(kSizes.size());
    if (contiguous) {
      int64_t total = 0;
      for (int64_t n : kSizes) total += n;
      buffers_.push_back(std::make_unique<DeviceTensor>(device(), Shape{total}, DType::F32));
      auto* base = static_cast<float*>(buffers_.back()->tensor().data);
      int64_t offset = total;
      for (size_t i = 0; i < kSizes.size(); ++i) {
        offset -= kSizes[i];
        grads[i] = Tensor(base + offset, DType::F32, device(), Shape{kSizes[i]});
      }
    } else {
      for (size_t i = 0; i < kSizes.size(); ++i) {
        buffers_.push_back(std::make_unique<DeviceTensor>(device(), Shape{kSizes[i]}, DType::F32));
        grads[i] = buffers_.back()->tensor();
      }
    }
    return grads;
  }

  static std::vector<float> host_grad(uint64_t step, int rank, size_t i) {
    std::vector<float> v(kSizes[i]);
    for (int64_t k = 0; k < kSizes[i]; ++k)
      v[k] = static_cast<float>(small_value(step * 100 + i, rank, k));
    return v;
  }

  void fill(const std::vector<Tensor>& grads, uint64_t step) {
    for (size_t i = 0; i < grads.size(); ++i) {
      const auto v = host_grad(step, rank_, i);
      comm::copy_from_host(grads[i], v.data(), nullptr);
    }
  }

  // The reference: a plain allreduce of each tensor on its own.
  std::vector<std::vector<float>> plain_allreduce(uint64_t step) {
    std::vector<std::vector<float>> out;
    for (size_t i = 0; i < kSizes.size(); ++i) {
      DeviceTensor t(device(), Shape{kSizes[i]}, DType::F32);
      t.upload(host_grad(step, rank_, i));
      comm_->allreduce(t, ReduceOp::Sum);
      out.push_back(t.download<float>());
    }
    return out;
  }

  static std::vector<float> download(const Tensor& t) {
    std::vector<float> v(static_cast<size_t>(t.numel()));
    comm::copy_to_host(v.data(), t, nullptr);
    return v;
  }

  std::vector<std::unique_ptr<DeviceTensor>> buffers_;
};

TEST_P(GradAllreduceTest, EqualsAPlainAllreduceOfEachTensor) {
  for (bool contiguous : {false, true}) {
    for (size_t bucket_bytes : {size_t{64}, size_t{1024}, size_t{4096}, size_t{1} << 20}) {
      std::vector<Tensor> grads = make_grads(contiguous);
      BucketedAllreduce buckets(*comm_, grads, bucket_bytes);
      for (size_t b = 0; b < buckets.num_buckets(); ++b) {
        if (contiguous) {
          EXPECT_TRUE(buckets.in_place(b)) << "bucket " << b;
        }
      }
      for (uint64_t step = 0; step < 2; ++step) {  // the second step reuses the buckets
        const auto expected = plain_allreduce(step);
        fill(grads, step);
        comm_->reset_stats();
        for (size_t i = 0; i < grads.size(); ++i) buckets.mark_ready(i);
        buckets.finish();
        for (size_t i = 0; i < grads.size(); ++i) {
          EXPECT_EQ(download(grads[i]), expected[i])
              << "gradient " << i << ", buckets of " << bucket_bytes << " bytes"
              << (contiguous ? ", contiguous" : ", scattered");
        }
        EXPECT_EQ(comm_->stats()[Collective::Allreduce].calls,
                  static_cast<int64_t>(buckets.num_buckets()));
      }
    }
  }
}

TEST_P(GradAllreduceTest, BucketsFillInBackwardOrderAndBigGradientsStandAlone) {
  std::vector<Tensor> grads = make_grads(false);
  // 4 KiB buckets: {7, 300, 64} (1484 B), {2048} (8 KiB, larger than a bucket), {5, 1000, 1}
  // (4024 B), {513}.
  BucketedAllreduce buckets(*comm_, grads, 4096);
  ASSERT_EQ(buckets.num_buckets(), 4u);
  const std::vector<size_t> expected_bucket = {0, 0, 0, 1, 2, 2, 2, 3};
  for (size_t i = 0; i < grads.size(); ++i) EXPECT_EQ(buckets.bucket_of(i), expected_bucket[i]);
  EXPECT_EQ(buckets.bucket_bytes(1), 8192u);
  // One bucket per gradient when buckets are smaller than any gradient; one for all when large.
  EXPECT_EQ(BucketedAllreduce(*comm_, grads, 4).num_buckets(), kSizes.size());
  EXPECT_EQ(BucketedAllreduce(*comm_, grads, size_t{1} << 20).num_buckets(), 1u);
}

TEST_P(GradAllreduceTest, BucketsStartAsSoonAsTheirGradientsAreReady) {
  std::vector<Tensor> grads = make_grads(false);
  BucketedAllreduce buckets(*comm_, grads, 4096);
  const auto expected = plain_allreduce(5);
  fill(grads, 5);
  comm_->reset_stats();
  buckets.mark_ready(0);
  buckets.mark_ready(1);
  EXPECT_EQ(comm_->stats()[Collective::Allreduce].calls, 0);
  buckets.mark_ready(2);  // bucket 0 complete
  EXPECT_EQ(comm_->stats()[Collective::Allreduce].calls, 1);
  buckets.mark_ready(4);
  buckets.mark_ready(5);
  buckets.mark_ready(6);  // bucket 2 complete, but bucket 1 has not started: wait for it
  EXPECT_EQ(comm_->stats()[Collective::Allreduce].calls, 1);
  buckets.mark_ready(3);  // buckets 1 and 2 start, in order
  EXPECT_EQ(comm_->stats()[Collective::Allreduce].calls, 3);
  buckets.finish();  // gradient 7 never marked: its bucket starts here
  EXPECT_EQ(comm_->stats()[Collective::Allreduce].calls, 4);
  for (size_t i = 0; i < grads.size(); ++i) EXPECT_EQ(download(grads[i]), expected[i]) << i;
  EXPECT_THROW(buckets.mark_ready(grads.size()), Error);
}

TEST_P(GradAllreduceTest, MixedDtypesGoToSeparateBuckets) {
  DeviceTensor a(device(), Shape{10}, DType::F32), b(device(), Shape{10}, DType::F64),
      c(device(), Shape{10}, DType::F64);
  a.upload(std::vector<float>(10, 1.0f));
  b.upload(std::vector<double>(10, 2.0));
  c.upload(std::vector<double>(10, 3.0));
  BucketedAllreduce buckets(*comm_, {a, b, c}, size_t{1} << 20);
  EXPECT_EQ(buckets.num_buckets(), 2u);
  buckets.finish();
  EXPECT_EQ(a.download<float>(), std::vector<float>(10, 1.0f * size_));
  EXPECT_EQ(b.download<double>(), std::vector<double>(10, 2.0 * size_));
  EXPECT_EQ(c.download<double>(), std::vector<double>(10, 3.0 * size_));
}

INSTANTIATE_TEST_SUITE_P(Backends, GradAllreduceTest, ::testing::ValuesIn(compiled_backends()),
                         backend_test_name);

}  // namespace
}  // namespace mowe::test
