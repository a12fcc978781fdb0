#include "cli/signals.hpp"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <thread>

#include "tessera/error.hpp"

namespace tessera::cli {
namespace {

std::atomic<bool> g_listening{false};
std::atomic<int> g_stop_signal{0};
std::atomic<bool> g_checkpoint_requested{false};

constexpr int kWatchedSignals[] = {SIGINT, SIGTERM, SIGUSR1};

sigset_t watched_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int signal : kWatchedSignals) sigaddset(&set, signal);
  return set;
}

// Never runs: every thread blocks these signals and the signal thread takes
// them with sigwait(). It is installed so that a signal the parent ignored
// (a shell's background job ignores SIGINT) is not discarded before
// sigwait() can see it, as the render's own handler did before.
extern "C" void unreachable_handler(int) {}

// The signal's default effect, as if tessera had never caught it: the
// process ends, and its parent (a shell, mpirun, Slurm) sees the signal.
[[noreturn]] void end_process_with(int signal) {
  std::signal(signal, SIG_DFL);
  sigset_t one;
  sigemptyset(&one);
  sigaddset(&one, signal);
  pthread_sigmask(SIG_UNBLOCK, &one, nullptr);
  raise(signal);  // to this thread, the only one that does not block it now
  _exit(128 + signal);
}

void take_signals() {
  const sigset_t set = watched_signals();
  for (;;) {
    int signal = 0;
    if (sigwait(&set, &signal) != 0) continue;
    if (signal == SIGUSR1) {
      // A checkpoint request with no render to checkpoint (before it
      // started, after it wrote its image) is dropped rather than ending a
      // run that has done nothing wrong.
      if (g_listening.load()) g_checkpoint_requested.store(true);
      continue;
    }
    if (!g_listening.load()) end_process_with(signal);
    if (g_stop_signal.exchange(signal) != 0) end_process_with(signal);
  }
}

}  // namespace

void start_signal_thread() {
  const sigset_t set = watched_signals();
  if (int status = pthread_sigmask(SIG_BLOCK, &set, nullptr); status != 0)
    fail("pthread_sigmask failed: ", std::strerror(status));
  struct sigaction action {};
  action.sa_handler = unreachable_handler;
  sigemptyset(&action.sa_mask);
  for (int signal : kWatchedSignals)
    if (sigaction(signal, &action, nullptr) != 0) fail("sigaction failed: ", std::strerror(errno));
  std::thread taker(take_signals);
  // Named so that it can be told apart: while it waits in sigwait() the
  // kernel shows the watched signals as unblocked in it.
  pthread_setname_np(taker.native_handle(), kSignalThreadName);
  taker.detach();
}

SignalListener::SignalListener() {
  g_stop_signal.store(0);
  g_checkpoint_requested.store(false);
  g_listening.store(true);
}

SignalListener::~SignalListener() { g_listening.store(false); }

int SignalListener::stop_signal() const { return g_stop_signal.load(); }

bool SignalListener::take_checkpoint_request() { return g_checkpoint_requested.exchange(false); }

}  // namespace tessera::cli
