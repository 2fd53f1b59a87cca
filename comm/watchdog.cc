#include "comm/watchdog.h"

#include <fmt/format.h>
#include <mpi.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

namespace mowe::comm {

std::string timeout_message(const WaitInfo& info) {
  return fmt::format(
      "[comm] {} (#{}, {} bytes) on rank {} of {} in group '{}' did not complete within {} s: a "
      "peer rank is dead or stuck",
      info.op, info.call, info.bytes, info.rank, info.size, info.group ? *info.group : "?",
      info.timeout_seconds);
}

namespace {

[[noreturn]] void abort_job(const WaitInfo& info, const std::function<void()>& before_abort) {
  const std::string msg = timeout_message(info);
  if (spdlog::default_logger()->should_log(spdlog::level::err)) {
    spdlog::error("{}; aborting the job", msg);
    spdlog::default_logger()->flush();
  } else {
    // The log level hides errors, but this is the job's last word.
    std::fprintf(stderr, "%s; aborting the job\n", msg.c_str());
    std::fflush(stderr);
  }
  if (before_abort) before_abort();
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Abort(MPI_COMM_WORLD, 3);
  std::_Exit(3);
}

}  // namespace

void watch(const WaitInfo& info, const std::function<bool()>& done,
           const std::function<void()>& before_abort) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  // Spin for short waits, yield while ranks share cores, sleep for long waits so a stuck job
  // does not burn its cores until the timeout.
  constexpr auto kSpin = std::chrono::microseconds(200);
  constexpr auto kYield = std::chrono::milliseconds(50);
  const auto timeout = std::chrono::duration<double>(info.timeout_seconds);
  for (;;) {
    if (done()) return;
    const auto waited = Clock::now() - start;
    if (info.timeout_seconds > 0 && waited > timeout) abort_job(info, before_abort);
    if (waited < kSpin) continue;
    if (waited < kYield) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }
}

}  // namespace mowe::comm
