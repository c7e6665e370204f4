// The I/O every gateway shares: the request written as fast as the backend
// takes it, the response read as it comes (a few reads per wake-up, for
// fairness between requests), reading paused while the client side drains,
// a non-blocking connect watched to its end, and the silence timer
// (silence_timer.h). What is left to a protocol is its bytes: it encodes the
// request (`unsent`/`sent`) and decodes the response (`received`).
// FastCGI, SCGI and uwsgi run over one socket; CGI over a pipe each way, with
// the script's stderr as a second input.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string_view>
#include <sys/epoll.h>

#include "adapters/silence_timer.h"
#include "base/loop.h"
#include "base/unique_fd.h"

namespace m2b {

class BytePump {
public:
    // What the pump asks and tells. Any of these may stop() the pump or start
    // it again on another descriptor; the pump notices and returns at once.
    class Protocol {
    public:
        virtual ~Protocol() = default;
        // The request bytes to write next; empty once the whole request is out.
        virtual std::string_view unsent() = 0;
        virtual void sent(size_t n) = 0;  // the backend took the first n bytes of unsent()
        // The backend stopped taking the request (EPIPE, a reset). By default
        // the rest is dropped and the response still read: an app may answer
        // without reading the whole body (a 413).
        virtual void send_failed(int /*error*/) {}
        // Where the next read goes; empty: read nothing now.
        virtual std::span<char> read_space() = 0;
        virtual void received(size_t n) = 0;     // n bytes arrived at the start of read_space()
        virtual void read_ended(int error) = 0;  // 0: the backend closed its end
        virtual void diagnostics(std::string_view /*bytes*/) {}  // the second input (CGI stderr)
        virtual void connect_failed(int error) = 0;
        // No progress for the timeout; `connecting`: the connect never completed.
        virtual void silent(bool connecting) = 0;
        // epoll refused a change: report the failure on the next turn (this may
        // run inside a sink callback).
        virtual void watch_failed(int error) = 0;
    };

    enum class Connect {
        InProgress,  // a non-blocking connect() returned EINPROGRESS
        Done,        // connected (Unix sockets, usually)
        Kept,        // a kept connection, watched already by its pool: only the callback moves
    };

    BytePump(Loop& loop, Protocol& protocol, std::chrono::milliseconds timeout);
    ~BytePump() { stop(); }
    BytePump(const BytePump&) = delete;
    BytePump& operator=(const BytePump&) = delete;

    // Starts the silence timer (the wait for a connection counts).
    void start_timer() { silence_.start(); }
    // Takes a socket and starts pumping: what can be written is written at
    // once, so the first watch asks only for what is still needed. False,
    // with errno set, when epoll refuses; the socket is still the pump's.
    [[nodiscard]] bool start_socket(UniqueFd socket, Connect connect);
    // Takes the pipe ends of a process (each non-blocking): the request goes
    // to `request`, closed once all of it is out (the end of the body);
    // the response comes from `response`; `diagnostics` is read whenever it
    // has bytes, never paused, and is not progress. False as above.
    [[nodiscard]] bool start_pipes(UniqueFd request, UniqueFd response, UniqueFd diagnostics);

    // Progress for the silence timer: response bytes, as the protocol decodes them.
    void progress() { silence_.activity(); }
    void set_paused(bool paused);
    bool paused() const { return paused_; }
    // Reads both inputs now, outside an event (CGI after the script's exit).
    void read_now();
    // Stops all I/O and the timer, and closes every descriptor.
    void stop();
    // Closes every descriptor; the timer goes on (a retry on a new connection).
    void close();
    // Hands the socket over, still watched (to a pool of kept connections),
    // and stops its I/O; the timer goes on.
    UniqueFd release_socket();

    int socket() const { return duplex_ ? request_fd_.get() : -1; }
    int response_fd() const { return duplex_ ? request_fd_.get() : response_fd_.get(); }
    std::chrono::milliseconds timeout() const { return silence_.timeout(); }

    // A read buffer for protocols that hand what they read on at once: one
    // for the process, so a sink copies what it keeps, and nothing reads
    // through a pump (read_now) from inside another's sink callback.
    static std::span<char> scratch();

private:
    enum class Stage {
        Stopped,     // no descriptor, or stopped
        Connecting,  // the socket's connect() in progress
        Pumping,     // writing the request, reading the response
    };

    uint32_t socket_events() const;
    uint32_t response_events() const { return paused_ ? 0u : uint32_t{EPOLLIN | EPOLLRDHUP}; }
    void update_events();
    void on_socket(uint32_t events);
    void flush();
    void request_done();
    void read_response();
    void read_diagnostics();
    bool same(uint64_t session) const { return session_ == session && stage_ != Stage::Stopped; }

    Loop& loop_;
    Protocol& protocol_;
    SilenceTimer silence_;
    Stage stage_ = Stage::Stopped;
    uint64_t session_ = 0;  // changes with every start and stop: loops in progress end
    bool duplex_ = false;   // one socket both ways: request_fd_ is it
    UniqueFd request_fd_, response_fd_, diagnostics_fd_;
    bool request_watched_ = false, response_watched_ = false, diagnostics_watched_ = false;
    bool sending_ = false;  // request bytes may be left
    bool paused_ = false;
};

}  // namespace m2b
