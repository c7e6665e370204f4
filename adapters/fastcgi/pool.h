// Kept connections to one FastCGI backend, and how many of them it serves.
//
// php-fpm and libfcgi give a connection one worker until the connection is
// closed, even while it is idle between requests. So kept connections beyond
// the backend's worker count are never read: they wait in its listen backlog
// while the workers wait on idle kept ones. Over a unix socket the pool sees
// this (not one byte of the request it wrote has been taken: SIOCOUTQ has not
// moved) and learns the backend's width; requests beyond it wait here, in
// order, for a connection to come free. Over TCP nothing shows an unread
// request, so the width is the configured limit (--max-requests) and the
// operator keeps it at or below the backend's workers.
//
// An idle connection pins a worker that other clients of the same backend
// (nginx, another handler) may need, so it is closed after idle_timeout.
//
// A request that must not run twice (a POST) never takes an idle connection:
// php-fpm closes a connection right after the last request of a recycled
// worker, and a POST sent into that close could not be retried. It gets a
// fresh one, in place of an idle one if the width is reached.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "base/life_token.h"
#include "base/loop.h"

namespace m2b {

class KeptConnections {
public:
    // An exchange waiting for a connection. Called from a posted task, never
    // from inside acquire() or release().
    class Waiter {
    public:
        virtual ~Waiter() = default;
        // fd >= 0: a connection (reused: kept from an earlier request, already
        // watched by the loop; else fresh and unwatched, maybe still
        // connecting). fd < 0: connecting failed with `error`.
        virtual void on_connection(int fd, bool reused, int error) = 0;
    };

    struct Options {
        std::string address;  // for log lines
        size_t limit = 64;    // connections at most (--max-requests)
        bool learn = false;   // unix sockets: find the backend's width
        // Unread this long, while the backend finished other requests meanwhile:
        // not accepted. (A backend that finished nothing may just be slow to run.)
        std::chrono::milliseconds unread_after{100};
        std::chrono::milliseconds probe_every{5000};  // try one more connection, at most this often
        std::chrono::milliseconds idle_timeout{1000};
    };
    // connect(error): a non-blocking socket, connected or connecting, or -1 with error set.
    using Connect = std::function<int(int& error)>;

    KeptConnections(Loop& loop, Options options, Connect connect);
    ~KeptConnections();
    KeptConnections(const KeptConnections&) = delete;
    KeptConnections& operator=(const KeptConnections&) = delete;

    // A connection now (idle, or fresh under the width), or -1: then `error`
    // is 0 and `who` is queued, or connecting failed with `error`.
    // fresh_only: for a request that must not be sent twice.
    int acquire(Waiter& who, bool fresh_only, bool& reused, int& error);
    // `who` ends: out of the queue and of the unread checks.
    void forget(Waiter& who);
    // Whether fresh connections are checked for unread requests: then the
    // request's last record goes in a write of its own (see written()).
    bool learning() const { return options_.learn; }
    // Bytes written on `fd` that the peer has not read (SIOCOUTQ; -1 if unknown).
    static int unread_bytes(int fd);
    // A fresh connection's whole request is written: check that the backend
    // takes some of it. php-fpm leaves the final empty STDIN record unread
    // until later, so it must be a separate write: the rest, once read, is
    // freed, and that is what shows. (If the rest was read before that last
    // write, the exchange saw it and does not call this.)
    void written(Waiter& who, int fd);
    // The backend read or answered: no more checks for `who`.
    void read_by_backend(Waiter& who);
    // A request ended cleanly on `fd`: kept for the next one, or closed if
    // there are more connections than the backend serves.
    void release(int fd);
    // `fd` is broken or ended uncleanly: closed.
    void discard(int fd);
    // A fresh connection for a request whose kept one turned out closed: it
    // had its turn, so it does not queue again.
    int reconnect(int& error) { return open_fresh(error); }

    size_t idle() const { return idle_.size(); }
    size_t open() const { return open_; }
    size_t width() const { return width_; }

private:
    struct Unread {
        Waiter* who;
        int fd;
        int queued;  // SIOCOUTQ when written
        Loop::Clock::time_point since;
        uint64_t answered_before;  // requests the backend had finished when this one was written
        bool counted = false;  // already narrowed the width once
    };
    struct Queued {
        Waiter* who;
        bool fresh_only;
    };
    void close_fd(int fd);
    void watch_idle(int fd);
    int take_idle();
    int open_fresh(int& error);
    // For who is next: a connection (fd >= 0, reused or not), -2 if none can be had now.
    int grant(bool fresh_only, bool& reused, int& error);
    bool probe_due() const;
    void post_serve();
    void serve_waiters();
    void check_unread();
    void narrow(size_t width, size_t unread);

    Loop& loop_;
    Options options_;
    Connect connect_;
    size_t width_;       // connections the backend is taken to serve at once
    size_t open_ = 0;    // kept connections open, busy or idle
    uint64_t answered_ = 0;  // requests finished cleanly, ever
    struct Idle {
        int fd;
        Loop::Clock::time_point since;
        bool operator==(int other) const { return fd == other; }
    };
    std::vector<Idle> idle_;  // most recently used last
    Loop::TimerId idle_timer_ = 0;
    void close_expired();
    std::deque<Queued> waiting_;
    std::vector<Unread> unread_;
    Loop::TimerId unread_timer_ = 0;
    Loop::TimerId probe_timer_ = 0;
    bool serve_posted_ = false;
    Loop::Clock::time_point last_width_change_;
    size_t lowest_width_logged_ = SIZE_MAX;
    LifeToken life_;  // posted tasks outliving the pool do nothing
};

}  // namespace m2b
