// The watchdog every blocking wait of comm/ goes through (nccl-tests habit: poll, and abort on a
// timeout rather than hang). A collective whose peer died or never arrives cannot be cancelled
// on one side, so a timeout logs which operation and rank gave up and ends the whole job.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace mowe::comm {

struct WaitInfo {
  const char* op = "";  // "allreduce", "alltoallv", ...
  int64_t call = 0;     // the collective's call number on this communicator (1-based)
  int64_t bytes = 0;    // payload bytes, for the message
  const std::string* group = nullptr;
  int rank = 0;
  int size = 1;
  double timeout_seconds = 0;  // 0: wait forever
  int collective = -1;         // static_cast<int>(Collective), for blocked_seconds(); -1: none
};

// Wall time this process has spent inside watch() for collectives of kind `collective` (index
// of comm::Collective), over all communicators and threads. This is the exposed communication
// time: a non-blocking allreduce that finished behind computation costs only its final check.
double blocked_seconds(int collective);

// The timeout message: "[comm] <op> (#<call>, <bytes> bytes) on rank R of N (host H) in group
// 'G' did not complete within T s: a peer rank is dead or stuck".
std::string timeout_message(const WaitInfo& info);

// Calls done() until it returns true: spinning at first (latency), then yielding the core (ranks
// often outnumber cores), then sleeping. On timeout logs timeout_message, runs before_abort (NCCL
// aborts its communicator) and calls MPI_Abort(MPI_COMM_WORLD, 3); never returns then.
void watch(const WaitInfo& info, const std::function<bool()>& done,
           const std::function<void()>& before_abort = {});

}  // namespace mowe::comm
