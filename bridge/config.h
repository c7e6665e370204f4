// The command line (product.md §1) as one plain struct.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <sys/types.h>
#include <vector>

namespace m2b {

enum class Mode { FastCgi, Cgi };

struct HandlerConfig {
    Mode mode = Mode::FastCgi;
    std::string backend;  // fastcgi: ADDRESS; cgi: PATH (canonical)
    bool cgi_directory = false;  // cgi PATH is a directory (a cgi-bin)
    std::vector<std::string> pass_env;  // cgi: names of m2bridge's environment passed to scripts
    std::string send_spec = "tcp://127.0.0.1:9997";
    std::string recv_spec = "tcp://127.0.0.1:9996";
    std::string document_root;
    std::string script_filename;
    std::string index;
    std::string upload_store;  // Mongrel2's upload.temp_store, as m2bridge sees the path
    uid_t upload_owner = 0;    // owner of the store's directory: every upload file must have it
    double timeout_seconds = 60;
    size_t max_requests = 64;
    size_t queue = 1024;
    size_t max_pipelined = 1000;  // requests waiting per connection behind the one answered
    double keepalive_seconds = 30;
    double send_timeout_seconds = 60;  // a reply waiting on a client that takes nothing
    double deadline_seconds = 3600;    // a request holding its backend, start to end; 0: none
    size_t buffer_size = 1024 * 1024;  // reply bytes held per request
    // Pacing of messages to one connection without download credits: Mongrel2
    // closes a connection with more than 16 queued and reads its SUB socket
    // without yielding, so a few go at once and then one per interval. Not
    // options: tests raise them.
    double pacing_burst = 4;
    std::chrono::milliseconds pacing_interval{10};
    bool keep_conn = false;
    std::string access_log;
    std::string log_level = "info";

    std::chrono::milliseconds timeout() const {
        return std::chrono::milliseconds(static_cast<int64_t>(timeout_seconds * 1000));
    }
    std::chrono::milliseconds keepalive() const {
        return std::chrono::milliseconds(static_cast<int64_t>(keepalive_seconds * 1000));
    }
    std::chrono::milliseconds send_timeout() const {
        return std::chrono::milliseconds(static_cast<int64_t>(send_timeout_seconds * 1000));
    }
    std::chrono::milliseconds deadline() const {
        return std::chrono::milliseconds(static_cast<int64_t>(deadline_seconds * 1000));
    }
};

// Parses argv. On --help/--version prints and exits 0; on a bad option, a
// missing file or a bad value prints one line naming it and exits 2.
HandlerConfig parse_command_line(int argc, char** argv);

}  // namespace m2b
