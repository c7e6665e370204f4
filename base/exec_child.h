// For the child between fork/clone and execve: only async-signal-safe calls.
#pragma once

#include <csignal>

namespace m2b {

// The program starts with what any program expects: no blocked signals (m2bridge
// blocks those it reads through signalfd) and default dispositions (it ignores SIGPIPE).
__attribute__((no_sanitize("address"))) inline void reset_signals_for_exec() {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int signo = 1; signo < NSIG; ++signo) sigaction(signo, &dfl, nullptr);
}

}  // namespace m2b
