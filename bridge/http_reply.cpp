#include "bridge/http_reply.h"

#include <algorithm>
#include <cctype>

#include "adapters/cgi_response.h"
#include "base/version.h"

namespace m2b {

namespace {

bool contains_token(std::string_view list, std::string_view token) {
    // Connection is a comma-separated list of case-insensitive tokens.
    size_t i = 0;
    while (i <= list.size()) {
        size_t comma = list.find(',', i);
        if (comma == std::string_view::npos) comma = list.size();
        std::string_view item = list.substr(i, comma - i);
        while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
        while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
        if (item.size() == token.size() &&
            std::equal(item.begin(), item.end(), token.begin(),
                       [](char a, char b) { return std::tolower((unsigned char)a) == std::tolower((unsigned char)b); }))
            return true;
        i = comma + 1;
    }
    return false;
}

}  // namespace

ReplyContext reply_context(std::string_view version, std::string_view method, std::string_view connection_header) {
    ReplyContext ctx;
    ctx.http10 = version == "HTTP/1.0";
    ctx.head_request = method == "HEAD";
    if (ctx.http10)
        ctx.client_wants_close = !contains_token(connection_header, "keep-alive");
    else
        ctx.client_wants_close = contains_token(connection_header, "close");
    return ctx;
}

bool status_has_no_body(int status) { return (status >= 100 && status < 200) || status == 204 || status == 304; }

Framing choose_framing(const ReplyContext& ctx, int status, int64_t known_length) {
    if (status_has_no_body(status)) return Framing::None;
    if (known_length >= 0) return Framing::ContentLength;
    if (ctx.http10) return Framing::CloseDelimited;
    return Framing::Chunked;
}

bool must_close(const ReplyContext& ctx, Framing framing) {
    return ctx.client_wants_close || framing == Framing::CloseDelimited;
}

const std::string& http_date(std::time_t now) {
    // Formatted once a second, not once a reply (one loop thread: no lock).
    static std::time_t cached_second = -1;
    static std::string cached;
    if (now != cached_second) {
        std::tm tm{};
        gmtime_r(&now, &tm);
        char buf[64];
        size_t n = std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        cached.assign(buf, n);
        cached_second = now;
    }
    return cached;
}

std::string build_head(const ReplyHead& head, const ReplyContext& ctx, Framing framing, uint64_t content_length,
                       std::time_t now) {
    std::string out;
    out.reserve(256);
    out += ctx.http10 ? "HTTP/1.0 " : "HTTP/1.1 ";
    out += std::to_string(head.status);
    out += ' ';
    out += head.reason.empty() ? standard_reason(head.status) : std::string_view(head.reason);
    out += "\r\n";
    bool has_server = false;
    for (const auto& [name, value] : head.headers) {
        out += name;
        out += ": ";
        out += value;
        out += "\r\n";
        if (name.size() == 6 && std::tolower((unsigned char)name[0]) == 's' &&
            std::equal(name.begin(), name.end(), "server", [](char a, char b) { return std::tolower((unsigned char)a) == b; }))
            has_server = true;
    }
    if (!has_server) {
        out += "Server: m2bridge/";
        out += kVersion;
        out += "\r\n";
    }
    out += "Date: ";
    out += http_date(now);
    out += "\r\n";
    switch (framing) {
        case Framing::ContentLength:
            // HEAD answers carry the length the GET would have had.
            out += "Content-Length: ";
            out += std::to_string(content_length);
            out += "\r\n";
            break;
        case Framing::Chunked:
            if (!ctx.head_request) out += "Transfer-Encoding: chunked\r\n";
            break;
        case Framing::None:
        case Framing::CloseDelimited:
            break;
    }
    if (must_close(ctx, framing))
        out += "Connection: close\r\n";
    else if (ctx.http10)
        out += "Connection: keep-alive\r\n";
    out += "\r\n";
    return out;
}

std::string_view chunk_size_line(size_t size, char (&buf)[20]) {
    int n = snprintf(buf, sizeof buf, "%zx\r\n", size);
    return std::string_view(buf, static_cast<size_t>(n));
}

std::string build_error_reply(int status, const ReplyContext& ctx, std::time_t now,
                              std::vector<std::pair<std::string, std::string>> extra) {
    ReplyHead head;
    head.status = status;
    head.headers = std::move(extra);
    head.headers.emplace_back("Content-Type", "text/plain; charset=utf-8");
    std::string body = std::to_string(status) + " " + std::string(standard_reason(status)) + "\n";
    std::string out = build_head(head, ctx, Framing::ContentLength, body.size(), now);
    if (!ctx.head_request) out += body;
    return out;
}

}  // namespace m2b
