// HTTP/1.x framing for replies. Mongrel2 writes reply bytes to the client as
// they are, so status line, Date, Content-Length or chunked encoding, and
// Connection are all the bridge's job (product.md §3).
#pragma once

#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace m2b {

enum class Framing {
    None,           // no body may follow (HEAD, 1xx, 204, 304)
    ContentLength,  // the whole length is known
    Chunked,        // HTTP/1.1 streaming
    CloseDelimited, // HTTP/1.0 streaming: the end of the body is the close
};

// What the reply depends on from the request side.
struct ReplyContext {
    bool http10 = false;           // VERSION is HTTP/1.0
    bool client_wants_close = false;  // Connection: close, or 1.0 without keep-alive
    bool head_request = false;     // METHOD HEAD
};

ReplyContext reply_context(std::string_view version, std::string_view method, std::string_view connection_header);

// True when a reply with this status never carries a body.
bool status_has_no_body(int status);

struct ReplyHead {
    int status = 200;
    std::string reason;
    std::vector<std::pair<std::string, std::string>> headers;
};

// The framing to use for a reply whose body length is `known_length`
// (negative: not known yet).
Framing choose_framing(const ReplyContext& ctx, int status, int64_t known_length);

// Whether the connection must be closed after this reply.
bool must_close(const ReplyContext& ctx, Framing framing);

// The status line and headers, with Date, framing and Connection added.
std::string build_head(const ReplyHead& head, const ReplyContext& ctx, Framing framing, uint64_t content_length,
                       std::time_t now);

// The line in front of a chunk of `size` bytes ("1a\r\n"), written into `buf`.
std::string_view chunk_size_line(size_t size, char (&buf)[20]);
inline constexpr std::string_view kLastChunk = "0\r\n\r\n";

// A short plain-text reply the bridge writes itself (errors, 503...).
std::string build_error_reply(int status, const ReplyContext& ctx, std::time_t now,
                              std::vector<std::pair<std::string, std::string>> extra = {});

// Valid until the next call with another second.
const std::string& http_date(std::time_t now);

}  // namespace m2b
