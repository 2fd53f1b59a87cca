// The rows (dim 0) of a stacked gradient [E, ...] that a step wrote. An expert parameter holds
// every expert of its shard but a step routes tokens to few of them: the other rows of its
// gradient stay zero, so zeroing, the gradient norm and a lazy optimizer visit the written rows
// only, and the cost of a step follows the routed tokens, not the number of experts.
//
// Storage is sized once (a mark per row and room for every row in the list), so marking,
// sorting and clearing never allocate.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "runtime/check.h"

namespace mowe {

class TouchedRows {
 public:
  // Tracks `rows` rows, none touched. Until then (or after disable) every row counts as touched.
  void enable(int64_t rows) {
    mark_.assign(static_cast<size_t>(rows), 0);
    list_.clear();
    list_.reserve(static_cast<size_t>(rows));
    sorted_ = true;
    enabled_ = true;
  }
  // Back to dense: e.g. when replicas sum whole gradients, rows another rank wrote appear here.
  void disable() {
    mark_ = {};
    list_ = {};
    enabled_ = false;
  }
  bool enabled() const { return enabled_; }

  void add(int64_t row) {
    if (!enabled_) return;
    MOWE_CHECK(row >= 0 && row < static_cast<int64_t>(mark_.size()),
               "touched row {} outside [0, {})", row, mark_.size());
    if (mark_[row]) return;
    mark_[row] = 1;
    list_.push_back(row);
    sorted_ = false;
  }

  // The touched rows in increasing order (sorted in place on first use after an add).
  std::span<const int64_t> rows() const {
    if (!sorted_) {
      std::sort(list_.begin(), list_.end());
      sorted_ = true;
    }
    return list_;
  }

  // fn(begin, end) for each maximal run of consecutive touched rows, in increasing order; with
  // tracking disabled, one run [0, all_rows).
  template <typename Fn>
  void for_each_run(int64_t all_rows, Fn&& fn) const {
    if (!enabled_) {
      if (all_rows > 0) fn(int64_t{0}, all_rows);
      return;
    }
    const std::span<const int64_t> r = rows();
    for (size_t i = 0; i < r.size();) {
      size_t j = i + 1;
      while (j < r.size() && r[j] == r[j - 1] + 1) ++j;
      fn(r[i], r[j - 1] + 1);
      i = j;
    }
  }

  // Forgets the touched rows (the caller zeroes them first).
  void clear() {
    for (int64_t r : list_) mark_[r] = 0;
    list_.clear();
    sorted_ = true;
  }

 private:
  bool enabled_ = false;
  std::vector<uint8_t> mark_;
  mutable std::vector<int64_t> list_;
  mutable bool sorted_ = true;
};

}  // namespace mowe
