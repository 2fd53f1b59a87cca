#include "launch/train/preemption.h"

#include <csignal>

namespace mowe::train {
namespace {

volatile std::sig_atomic_t g_signal = 0;

extern "C" void on_stop_signal(int signo) {
  if (g_signal == 0) g_signal = signo;  // the first one counts; later ones change nothing
}

}  // namespace

void install_stop_handlers() {
  struct sigaction action = {};
  action.sa_handler = on_stop_signal;
  action.sa_flags = SA_RESTART;
  sigemptyset(&action.sa_mask);
  for (int signo : {SIGTERM, SIGUSR1, SIGINT}) sigaction(signo, &action, nullptr);
}

int stop_signal() {
  return g_signal;
}

void reset_stop_signal() {
  g_signal = 0;
}

int stop_requested(comm::Communicator& comm) {
  int32_t flag = g_signal;
  comm.allreduce(Tensor(&flag, DType::I32, Device::CPU, {1}), comm::ReduceOp::Max);
  return flag;
}

}  // namespace mowe::train
