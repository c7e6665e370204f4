// For the child between fork/clone and execve: only async-signal-safe calls.
#pragma once

#include <csignal>

namespace m2b {

// The program starts with what any program expects: no blocked signals (m2bridge
// blocks those it reads through signalfd) and default dispositions (it ignores SIGPIPE).
//
// The signals whose disposition is not SIG_DFL here, taken in the parent: the child puts
// back those alone (one sigaction each) instead of all 64, on the path of every script.
// m2bridge ignores SIGPIPE in main and installs no handler (the signals it reads are
// blocked and come through signalfd), so a set taken when a gateway starts stays true.
struct SignalsToReset {
    int signals[NSIG] = {};
    int count = 0;
};
inline SignalsToReset signals_not_default() {
    SignalsToReset out;
    for (int signo = 1; signo < NSIG; ++signo) {
        struct sigaction now {};
        if (sigaction(signo, nullptr, &now) != 0) continue;  // glibc's own (32, 33): not ours to set
        if (!(now.sa_flags & SA_SIGINFO) && now.sa_handler == SIG_DFL) continue;
        out.signals[out.count++] = signo;  // ignored or caught
    }
    return out;
}

// In the child: the signals in `which` back to SIG_DFL, then the mask emptied (last: no
// handler of m2bridge's can run in a child that shares its memory).
__attribute__((no_sanitize("address"))) inline void reset_signals_for_exec(const SignalsToReset& which) {
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int i = 0; i < which.count; ++i) sigaction(which.signals[i], &dfl, nullptr);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
}

}  // namespace m2b
