#include "comm/watchdog.h"

#include <fmt/format.h>
#include <mpi.h>
#include <spdlog/spdlog.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "runtime/log.h"

namespace mowe::comm {

std::string timeout_message(const WaitInfo& info) {
  return fmt::format(
      "[comm] {} (#{}, {} bytes) on rank {} of {} (host {}) in group '{}' did not complete within "
      "{} s: a peer rank is dead or stuck",
      info.op, info.call, info.bytes, info.rank, info.size, log::host_name(),
      info.group ? *info.group : "?", info.timeout_seconds);
}

namespace {

// One slot per comm::Collective (4), plus room: a process-wide clock, so the trainer sees the
// time of every communicator (world, replica groups, hierarchical all-to-all levels) at once.
std::array<std::atomic<double>, 8> g_blocked{};

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
    if (done()) {
      if (info.collective >= 0 && info.collective < static_cast<int>(g_blocked.size()))
        g_blocked[info.collective].fetch_add(
            std::chrono::duration<double>(Clock::now() - start).count(), std::memory_order_relaxed);
      return;
    }
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

double blocked_seconds(int collective) {
  if (collective < 0 || collective >= static_cast<int>(g_blocked.size())) return 0;
  return g_blocked[collective].load(std::memory_order_relaxed);
}

}  // namespace mowe::comm
