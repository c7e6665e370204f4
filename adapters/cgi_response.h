// The head of a CGI response (RFC 3875 §6), as a CGI program prints it or a
// FastCGI app sends it on STDOUT, read incrementally and validated strictly:
// whatever the app wrote must never reach the client unframed.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace m2b {

inline constexpr size_t kMaxResponseHead = 64 * 1024;

enum class ResponseKind {
    Document,        // status + headers + body
    LocalRedirect,   // Location: /path with no Status: run the request again there (§6.2.2)
    ClientRedirect,  // Location: with no Status: 302 to the client
};

struct ResponseHead {
    ResponseKind kind = ResponseKind::Document;
    int status = 200;
    std::string reason;  // empty: use the standard phrase
    // Headers passed on to the client, in order. Framing, hop-by-hop, Status,
    // X-CGI-*, the X-Sendfile family and the deliver header are not in here.
    std::vector<std::pair<std::string, std::string>> headers;
    std::optional<std::string> location;
    std::optional<uint64_t> content_length;  // as the app declared it
    bool has_content_type = false;
    // X-Mongrel2-Deliver: the connection ids to send the reply to instead of
    // the requester. Present and empty means "send to nobody".
    std::optional<std::vector<uint64_t>> deliver;
    // X-Sendfile, X-Accel-Redirect or X-LIGHTTPD-send-file: the file to send
    // instead of the body (bridge/file_reply.h).
    std::optional<std::string> sendfile;
};

class CgiHeadParser {
public:
    enum class State { NeedMore, Done, Error };

    // Feeds output bytes. Once Done, `body_offset()` counts the bytes of all
    // feeds so far that belong to the head; the rest is body.
    State feed(std::string_view bytes);

    State state() const { return state_; }
    const ResponseHead& head() const { return head_; }
    ResponseHead& head() { return head_; }
    const std::string& error() const { return error_; }
    // Body bytes that arrived together with the end of the head.
    std::string_view leftover_body() const { return leftover_; }

private:
    State fail(std::string why);
    State parse_head(std::string_view block);

    State state_ = State::NeedMore;
    std::string buffer_;
    std::string leftover_;
    ResponseHead head_;
    std::string error_;
};

// Parses "12 17 42" (spaces or commas between ids). Nullopt on anything else.
std::optional<std::vector<uint64_t>> parse_deliver_ids(std::string_view value);

std::string_view standard_reason(int status);

}  // namespace m2b
