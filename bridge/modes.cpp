#include "bridge/modes.h"

#include <cstdlib>
#include <stdexcept>

#include "adapters/balancer.h"
#include "adapters/cgi/runner.h"
#include "adapters/fastcgi/client.h"
#include "adapters/stream/gateway.h"

namespace m2b {

namespace {

std::unique_ptr<Gateway> make_fastcgi(Loop& loop, const HandlerConfig& c, const std::string& backend) {
    FastcgiOptions options;
    options.address = backend;
    options.timeout = c.timeout();
    options.keep_conn = c.keep_conn.value_or(false);
    options.max_connections = c.max_requests;
    return std::make_unique<FastcgiGateway>(loop, options);
}

std::unique_ptr<Gateway> make_cgi(Loop& loop, const HandlerConfig& c, const std::string& /*the path: per request*/) {
    CgiOptions options;
    options.timeout = c.timeout();
    for (const auto& name : c.pass_env)
        if (const char* value = std::getenv(name.c_str())) options.passed_env.push_back(name + "=" + value);
    return std::make_unique<CgiGateway>(loop, std::move(options));
}

template <const StreamProtocol& protocol>
std::unique_ptr<Gateway> make_stream(Loop& loop, const HandlerConfig& c, const std::string& backend) {
    return std::make_unique<StreamGateway>(loop, StreamOptions{.address = backend, .timeout = c.timeout(),
                                                               .protocol = &protocol});
}

}  // namespace

const std::vector<ModeInfo>& modes() {
    static const std::vector<ModeInfo> table = {
        {Mode::FastCgi, "fastcgi", "send requests to FastCGI servers, or to copies of one that m2bridge starts", true,
         &make_fastcgi},
        {Mode::Cgi, "cgi", "run a CGI program (or a directory of them) per request", false, &make_cgi},
        {Mode::Scgi, "scgi", "send requests to an SCGI server (uWSGI --scgi-socket, python-scgi, ...)", true,
         &make_stream<kScgi>},
        {Mode::Uwsgi, "uwsgi", "send requests to a uwsgi-protocol server (uWSGI --uwsgi-socket)", true,
         &make_stream<kUwsgi>},
    };
    return table;
}

const ModeInfo& mode_info(Mode mode) {
    for (const ModeInfo& m : modes())
        if (m.mode == mode) return m;
    throw std::logic_error("unknown mode");
}

std::unique_ptr<Gateway> make_gateway(Loop& loop, const HandlerConfig& c) {
    const ModeInfo& mode = mode_info(c.mode);
    if (c.other_backends.empty()) return mode.make_gateway(loop, c, c.backend);
    std::vector<std::unique_ptr<Gateway>> backends;
    backends.push_back(mode.make_gateway(loop, c, c.backend));
    for (const auto& address : c.other_backends) backends.push_back(mode.make_gateway(loop, c, address));
    return std::make_unique<BalancedGateway>(loop, std::move(backends),
                                             BalancedGateway::Options{.per_backend_limit = c.max_requests});
}

std::string mode_names(const char* last_separator) {
    std::string names;
    const auto& all = modes();
    for (size_t i = 0; i < all.size(); ++i) {
        if (i > 0) names += i + 1 == all.size() ? last_separator : ", ";
        names += all[i].name;
    }
    return names;
}

}  // namespace m2b
