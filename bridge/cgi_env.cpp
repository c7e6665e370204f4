#include "bridge/cgi_env.h"

#include <cctype>

#include "base/version.h"

namespace m2b {

namespace {

bool is_client_name_char(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'; }

bool has_control(std::string_view v) {
    for (char c : v)
        if (c == '\0' || c == '\r' || c == '\n') return true;
    return false;
}

}  // namespace

std::string http_variable_name(std::string_view name) {
    // Client header names reach us lower-cased; anything with an upper-case
    // letter is a key Mongrel2 wrote itself (PATH, METHOD, ...). Names with
    // '_' are dropped so that X_Real_IP cannot pose as X-Real-IP.
    if (name.empty()) return "";
    for (char c : name)
        if (!is_client_name_char(c)) return "";
    static constexpr std::string_view never[] = {
        "proxy",            // httpoxy: HTTP_PROXY would steer the app's outgoing requests
        "content-length",   // already CONTENT_LENGTH
        "content-type",     // already CONTENT_TYPE
        "connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "proxy-connection",
        "proxy-authorization",
    };
    for (auto n : never)
        if (name == n) return "";
    if (name.starts_with("x-mongrel2-")) return "";
    std::string out = "HTTP_";
    for (char c : name) out += c == '-' ? '_' : static_cast<char>(c >= 'a' && c <= 'z' ? c - 32 : c);
    return out;
}

std::pair<std::string, std::string> split_host(std::string_view host, bool https) {
    std::string default_port = https ? "443" : "80";
    if (host.empty()) return {"localhost", default_port};
    std::string_view name = host, port;
    if (host.front() == '[') {
        size_t close = host.find(']');
        if (close == std::string_view::npos) return {"localhost", default_port};
        name = host.substr(0, close + 1);
        if (close + 1 < host.size() && host[close + 1] == ':') port = host.substr(close + 2);
    } else if (size_t colon = host.rfind(':'); colon != std::string_view::npos) {
        name = host.substr(0, colon);
        port = host.substr(colon + 1);
    }
    for (char c : port)
        if (c < '0' || c > '9') return {"localhost", default_port};
    for (char c : name)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_' || c == '[' ||
              c == ']' || c == ':'))
            return {"localhost", default_port};
    std::string lower;
    for (char c : name) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return {lower.empty() ? "localhost" : lower, port.empty() ? default_port : std::string(port)};
}

CgiEnv build_cgi_env(const Request& req, const ScriptTarget& target, const EnvOptions& options,
                     std::optional<uint64_t> content_length) {
    CgiEnv env;
    env.reserve(32 + req.headers.size());
    auto set = [&](std::string name, std::string_view value) { env.emplace_back(std::move(name), std::string(value)); };

    bool https = req.header_or("URL_SCHEME", "http") == "https";
    std::string_view method = req.header_or("METHOD", "GET");
    set("GATEWAY_INTERFACE", "CGI/1.1");
    set("SERVER_SOFTWARE", std::string("m2bridge/") + kVersion);
    set("SERVER_PROTOCOL", req.kind == MessageKind::JsonSocket ? "HTTP/1.1" : req.header_or("VERSION", "HTTP/1.1"));
    set("REQUEST_METHOD", method);
    set("REQUEST_SCHEME", https ? "https" : "http");
    if (https) set("HTTPS", "on");
    auto [server_name, server_port] = split_host(req.header_or("host", ""), https);
    set("SERVER_NAME", server_name);
    set("SERVER_PORT", server_port);
    set("REMOTE_ADDR", req.header_or("REMOTE_ADDR", ""));
    set("QUERY_STRING", req.header_or("QUERY", ""));
    set("REQUEST_URI", req.header_or("URI", req.path));
    set("SCRIPT_NAME", target.script_name);
    if (!target.path_info.empty()) {
        set("PATH_INFO", target.path_info);
        if (!options.document_root.empty()) set("PATH_TRANSLATED", options.document_root + target.path_info);
    }
    if (!options.document_root.empty()) set("DOCUMENT_ROOT", options.document_root);
    if (!target.script_filename.empty())
        set("SCRIPT_FILENAME", target.script_filename);
    else if (!options.script_filename.empty())
        set("SCRIPT_FILENAME", options.script_filename);
    if (content_length) set("CONTENT_LENGTH", std::to_string(*content_length));
    if (req.kind == MessageKind::JsonSocket)
        set("CONTENT_TYPE", "application/json");
    else if (const std::string* ct = req.header("content-type"); ct && !has_control(*ct))
        set("CONTENT_TYPE", *ct);
    set("REDIRECT_STATUS", "200");  // php-cgi refuses to run without it (cgi.force_redirect)
    set("X_MONGREL2_SENDER", req.sender);
    set("X_MONGREL2_CONN_ID", std::to_string(req.conn_id));
    set("X_MONGREL2_PATTERN", req.header_or("PATTERN", ""));

    for (const Header& h : req.headers) {
        std::string name = http_variable_name(h.name);
        if (name.empty() || h.values.empty()) continue;
        std::string_view separator = h.name == "cookie" ? "; " : ", ";
        std::string value;
        bool bad = false;
        for (const auto& v : h.values) {
            if (has_control(v)) bad = true;
            if (!value.empty()) value += separator;
            value += v;
        }
        if (!bad) env.emplace_back(std::move(name), std::move(value));
    }
    return env;
}

}  // namespace m2b
