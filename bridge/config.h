// What m2bridge runs: one HandlerConfig per Mongrel2 Handler, and the few
// settings of the process (product.md §1). The command line and the TOML
// config file fill the same structs through one table of options
// (config_options.h), so a key and its option cannot disagree.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

namespace m2b {

// The backend protocol of a handler; bridge/modes.h names each one.
enum class Mode { FastCgi, Cgi, Scgi, Uwsgi };

struct HandlerConfig {
    std::string name;  // logs and metrics labels; "handler-N" when not given
    Mode mode = Mode::FastCgi;
    std::string backend;  // fastcgi, scgi, uwsgi: ADDRESS (spawn: filled in when the socket exists); cgi: PATH (canonical)
    // fastcgi, scgi, uwsgi: further addresses; requests go to the least busy
    // of all (adapters/balancer.h), max_requests each.
    std::vector<std::string> other_backends;
    bool cgi_directory = false;  // cgi PATH is a directory (a cgi-bin)
    std::vector<std::string> spawn_command;  // fastcgi --spawn: the program m2bridge starts
    size_t spawn_instances = 0;              // 0: no spawn, ADDRESS is an external server
    std::vector<std::string> pass_env;  // cgi: names of m2bridge's environment passed to scripts
    std::string send_spec = "tcp://127.0.0.1:9997";
    std::string recv_spec = "tcp://127.0.0.1:9996";
    // Further Mongrel2 servers (send_spec, recv_spec) for the same backend, as
    // --send-spec/--recv-spec given again or arrays in the file. finish_service
    // makes each its own handler: connection ids are per server, so each server
    // needs its own table of connections.
    std::vector<std::pair<std::string, std::string>> other_servers;
    std::string document_root;
    std::string script_filename;
    std::string index;
    std::vector<std::string> sendfile_roots;  // X-Sendfile may name files inside these (canonical)
    std::string upload_store;  // Mongrel2's upload.temp_store, as m2bridge sees the path
    uid_t upload_owner = 0;    // owner of the store's directory: every upload file must have it
    std::string disconnect_path;  // request made when a held or JSON-socket client leaves
    double timeout_seconds = 60;
    size_t max_requests = 64;
    size_t max_procs = 0;  // cgi: 0 means 2 x cores; becomes max_requests
    size_t queue = 1024;
    size_t max_pipelined = 1000;  // requests waiting per connection behind the one answered
    double keepalive_seconds = 30;
    double send_timeout_seconds = 60;  // a reply waiting on a client that takes nothing
    double deadline_seconds = 3600;    // a request holding its backend, start to end; 0: none
    size_t buffer_size = 1024 * 1024;  // reply bytes held per request
    // FastCGI: reuse backend connections. Unset: yes for unix sockets (where a
    // connection the backend does not serve can be seen), no over TCP.
    std::optional<bool> keep_conn;
    bool allow_root = false;  // cgi: scripts may run as root
    std::string access_log;   // a file, or "-" for stderr
    // Pacing of messages to one connection without download credits: Mongrel2
    // closes a connection with more than 16 queued and reads its SUB socket
    // without yielding, so a few go at once and then one per interval. Not
    // options: tests raise them.
    double pacing_burst = 4;
    std::chrono::milliseconds pacing_interval{10};

    bool spawns() const { return spawn_instances > 0; }
    // Requests in flight toward the backends, all of them together.
    size_t in_flight_limit() const { return max_requests * (1 + other_backends.size()); }
    static std::chrono::milliseconds ms(double seconds) {
        return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
    }
    std::chrono::milliseconds timeout() const { return ms(timeout_seconds); }
    std::chrono::milliseconds keepalive() const { return ms(keepalive_seconds); }
    std::chrono::milliseconds send_timeout() const { return ms(send_timeout_seconds); }
    std::chrono::milliseconds deadline() const { return ms(deadline_seconds); }
};

// The process: the handlers and what they share.
struct ServiceConfig {
    std::string config_file;  // where it was read from (empty: the command line); SIGHUP re-reads it
    std::string user;         // drop to this user and its groups before reading any request
    std::string metrics;      // HOST:PORT serving Prometheus text; empty: off
    std::string log_level = "info";
    double grace_seconds = 10;  // in-flight requests get this long after SIGTERM
    std::vector<HandlerConfig> handlers;
};

// A mistake in the configuration: one line naming the option or key and the value.
struct ConfigError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

enum class Action { Run, Check };

struct CommandLine {
    Action action = Action::Run;
    ServiceConfig config;
    bool log_level_given = false;  // --log-level next to --config: it outlasts reloads
};

// Parses argv (and the config file it names). On --help/--version prints and
// exits 0; on any mistake prints one line naming it and exits 2.
CommandLine parse_command_line(int argc, char** argv);

// Reads and checks a TOML config file (config_file.cpp). Throws ConfigError
// "FILE:LINE: key: what is wrong".
ServiceConfig load_config_file(const std::string& path);
// The same for a file's text; `path` only names it in errors.
ServiceConfig load_config_text(std::string_view text, const std::string& path);

// Checks one handler and resolves its paths (realpath, the upload store's
// owner, the backend address). Throws ConfigError naming the option.
// `file_keys`: name options as a file does ("timeout"), else as the command line ("--timeout").
void finish_handler(HandlerConfig& h, bool file_keys);
// Whole-service checks: handlers do not share endpoints, the user exists, ...
void finish_service(ServiceConfig& c);

// The resolved configuration as a TOML file (m2bridge check); equal text
// means equal configuration, which reload uses to keep unchanged handlers.
std::string to_toml(const ServiceConfig& c);
std::string to_toml(const HandlerConfig& h);

}  // namespace m2b
