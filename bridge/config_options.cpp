#include "bridge/config_options.h"

#include <cstdio>

#include "bridge/modes.h"

namespace m2b {

namespace {

// Bounds keep every timer and buffer sane: a 1e-6 s keep-alive would flood
// Mongrel2, a 1e300 s timeout overflows the clock.
constexpr double kMaxSeconds = 7 * 24 * 3600;
using S = OptionSpec;
using H = HandlerConfig;

std::string number(double v) {
    char text[32];
    std::snprintf(text, sizeof text, "%g", v);
    return text;
}

}  // namespace

std::string option_for_key(const char* key) {
    std::string name = "--";
    for (const char* p = key; *p; ++p) name += *p == '_' ? '-' : *p;
    return name;
}

std::string OptionSpec::option() const { return option_for_key(key); }

std::string OptionSpec::applies_to_text() const {
    std::vector<const char*> names;
    for (const ModeInfo& m : modes())
        if (applies_to(m.mode)) names.push_back(m.name);
    std::string text;
    for (size_t i = 0; i < names.size(); ++i) text += (i == 0 ? "" : i + 1 == names.size() ? " and " : ", ") + std::string(names[i]);
    return text + " handlers";
}

std::string OptionSpec::check(double value) const {
    if ((value >= min && value <= max) || (zero_means_none && value == 0)) return "";
    return (zero_means_none ? "0, or " : std::string()) + "between " + number(min) + " and " + number(max);
}

const std::vector<OptionSpec>& handler_options() {
    static const std::vector<OptionSpec> options = {
        {"send_spec", "the Handler's send_spec (m2bridge connects PULL to it)", S::kAny, &H::send_spec},
        {"recv_spec", "the Handler's recv_spec (m2bridge connects PUB to it)", S::kAny, &H::recv_spec},
        {"document_root", "DOCUMENT_ROOT; scripts are looked up inside it", S::kAny, &H::document_root},
        {"script_filename", "fixed SCRIPT_FILENAME (a front controller)", S::kSockets, &H::script_filename},
        {"index", "script for paths ending in a directory (a file name)", S::kAny, &H::index},
        {"upload_store", "Mongrel2's upload.temp_store template (e.g. /srv/m2/tmp/upload.XXXXXX) as m2bridge sees it",
         S::kAny, &H::upload_store},
        {"timeout", "seconds a backend may stay silent before 504", S::kAny, &H::timeout_seconds, 0.01, kMaxSeconds},
        {"deadline", "seconds a request may hold its backend, start to end (0: no limit)", S::kAny, &H::deadline_seconds,
         0.01, kMaxSeconds, true},
        {"send_timeout", "seconds a reply may wait for a client that takes no bytes; then the connection is closed",
         S::kAny, &H::send_timeout_seconds, 0.1, kMaxSeconds},
        {"max_requests", "requests in flight toward the backend", S::kSockets, &H::max_requests, 1, 100000},
        {"max_procs", "scripts running at once; the rest queue (0: 2 x cores)", S::kCgi, &H::max_procs, 1, 100000, true},
        {"queue", "requests allowed to wait; beyond it the answer is 503", S::kAny, &H::queue, 0, 1000000},
        {"max_pipelined", "requests waiting per connection behind the one answered; beyond it 503 and close", S::kAny,
         &H::max_pipelined, 0, 100000},
        {"buffer_size", "reply bytes held per request; the backend waits beyond it", S::kAny, &H::buffer_size,
         16 * 1024, 256 * 1024 * 1024},
        {"keepalive", "seconds between Mongrel2 ctl keep-alive messages", S::kAny, &H::keepalive_seconds, 0.1,
         kMaxSeconds},
        {"keep_conn",
         "reuse backend connections (FCGI_KEEP_CONN); default: on for unix sockets, off over TCP "
         "(there, keep --max-requests at or below the backend's workers)",
         S::kFastCgi, &H::keep_conn},
        {"pass_env", "pass this variable of m2bridge's environment to scripts (repeatable)", S::kCgi, &H::pass_env},
        {"allow_root", "let CGI scripts run as root (without it, cgi refuses to start as root)", S::kCgi,
         &H::allow_root},
        {"sendfile_root",
         "a directory whose files an app may have sent with X-Sendfile or X-Accel-Redirect (repeatable); "
         "without one, such a response is a 502",
         S::kAny, &H::sendfile_roots},
        {"access_log", "access log file, or - for stderr", S::kAny, &H::access_log},
        {"disconnect_path",
         "when a held long-poll or JSON-socket client leaves, POST {\"type\":\"disconnect\"} to this path",
         S::kAny, &H::disconnect_path},
    };
    return options;
}

}  // namespace m2b
