#include "adapters/cgi_response.h"

#include <algorithm>
#include <charconv>

namespace m2b {

namespace {

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
           });
}

bool istarts_with(std::string_view s, std::string_view prefix) {
    return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

bool is_tchar(char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

// Fields the bridge owns or that must not reach the client (cgi-fastcgi.md §2.4).
bool is_dropped_field(std::string_view name) {
    static constexpr std::string_view dropped[] = {
        "connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection",
        "date",
    };
    for (auto d : dropped)
        if (iequals(name, d)) return true;
    return istarts_with(name, "x-cgi-");
}

// Finds the empty line ending the head: LF LF, CRLF CRLF, or a mix.
// Returns the offset just past it, or npos.
size_t find_head_end(std::string_view buf, size_t from) {
    for (size_t i = from; i < buf.size(); ++i) {
        if (buf[i] != '\n') continue;
        size_t j = i + 1;
        if (j < buf.size() && buf[j] == '\n') return j + 1;
        if (j + 1 < buf.size() && buf[j] == '\r' && buf[j + 1] == '\n') return j + 2;
    }
    return std::string_view::npos;
}

}  // namespace

std::string_view standard_reason(int status) {
    switch (status) {
        case 100: return "Continue";
        case 101: return "Switching Protocols";
        case 200: return "OK";
        case 201: return "Created";
        case 202: return "Accepted";
        case 203: return "Non-Authoritative Information";
        case 204: return "No Content";
        case 205: return "Reset Content";
        case 206: return "Partial Content";
        case 300: return "Multiple Choices";
        case 301: return "Moved Permanently";
        case 302: return "Found";
        case 303: return "See Other";
        case 304: return "Not Modified";
        case 307: return "Temporary Redirect";
        case 308: return "Permanent Redirect";
        case 400: return "Bad Request";
        case 401: return "Unauthorized";
        case 402: return "Payment Required";
        case 403: return "Forbidden";
        case 404: return "Not Found";
        case 405: return "Method Not Allowed";
        case 406: return "Not Acceptable";
        case 408: return "Request Timeout";
        case 409: return "Conflict";
        case 410: return "Gone";
        case 411: return "Length Required";
        case 412: return "Precondition Failed";
        case 413: return "Content Too Large";
        case 414: return "URI Too Long";
        case 415: return "Unsupported Media Type";
        case 416: return "Range Not Satisfiable";
        case 417: return "Expectation Failed";
        case 422: return "Unprocessable Content";
        case 425: return "Too Early";
        case 426: return "Upgrade Required";
        case 428: return "Precondition Required";
        case 429: return "Too Many Requests";
        case 431: return "Request Header Fields Too Large";
        case 451: return "Unavailable For Legal Reasons";
        case 500: return "Internal Server Error";
        case 501: return "Not Implemented";
        case 502: return "Bad Gateway";
        case 503: return "Service Unavailable";
        case 504: return "Gateway Timeout";
        case 505: return "HTTP Version Not Supported";
        default: break;
    }
    if (status >= 200 && status < 300) return "OK";
    if (status >= 300 && status < 400) return "Redirection";
    if (status >= 400 && status < 500) return "Client Error";
    return "Server Error";
}

std::optional<std::vector<uint64_t>> parse_deliver_ids(std::string_view value) {
    std::vector<uint64_t> ids;
    size_t i = 0;
    while (i < value.size()) {
        char c = value[i];
        if (c == ' ' || c == '\t' || c == ',') {
            ++i;
            continue;
        }
        size_t start = i;
        while (i < value.size() && value[i] >= '0' && value[i] <= '9') ++i;
        if (i == start) return std::nullopt;
        if (i < value.size() && value[i] != ' ' && value[i] != '\t' && value[i] != ',') return std::nullopt;
        uint64_t id = 0;
        auto [end, ec] = std::from_chars(value.data() + start, value.data() + i, id);
        if (ec != std::errc() || id > UINT32_MAX) return std::nullopt;  // Mongrel2 ids are 32-bit
        ids.push_back(id);
    }
    return ids;
}

CgiHeadParser::State CgiHeadParser::fail(std::string why) {
    error_ = std::move(why);
    state_ = State::Error;
    buffer_.clear();
    return state_;
}

CgiHeadParser::State CgiHeadParser::feed(std::string_view bytes) {
    if (state_ != State::NeedMore) return state_;
    // Only rescan the bytes that could complete a terminator.
    size_t from = buffer_.size() >= 3 ? buffer_.size() - 3 : 0;
    buffer_.append(bytes);
    if (buffer_.starts_with("\n") || buffer_.starts_with("\r\n"))
        return fail("output starts with an empty line: no header fields");
    size_t end = find_head_end(buffer_, from);
    if (end == std::string::npos) {
        if (buffer_.size() > kMaxResponseHead) return fail("response head larger than 64 KiB");
        return state_;
    }
    if (end > kMaxResponseHead) return fail("response head larger than 64 KiB");
    leftover_ = buffer_.substr(end);
    std::string block = buffer_.substr(0, end);
    buffer_.clear();
    buffer_.shrink_to_fit();
    return parse_head(block);
}

CgiHeadParser::State CgiHeadParser::parse_head(std::string_view block) {
    bool seen_status = false;
    bool seen_location = false;
    size_t pos = 0;
    size_t lines = 0;
    while (pos < block.size()) {
        size_t nl = block.find('\n', pos);
        std::string_view line = block.substr(pos, nl - pos);
        pos = nl + 1;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.empty()) break;  // the blank line ending the head
        if (++lines > 1000) return fail("more than 1000 header lines");
        if (line.find('\r') != std::string_view::npos) return fail("bare CR in a header line");
        if (line.find('\0') != std::string_view::npos) return fail("NUL in a header line");
        if (line[0] == ' ' || line[0] == '\t') return fail("folded header line");
        size_t colon = line.find(':');
        if (colon == std::string_view::npos) return fail("header line without a colon");
        std::string_view name = line.substr(0, colon);
        if (name.empty() || !std::all_of(name.begin(), name.end(), is_tchar))
            return fail("header name is not a token");
        std::string_view value = trim(line.substr(colon + 1));

        if (iequals(name, "Status")) {
            if (seen_status) return fail("Status given twice");
            seen_status = true;
            if (value.size() < 3 || !std::all_of(value.begin(), value.begin() + 3, [](char c) { return c >= '0' && c <= '9'; }) ||
                (value.size() > 3 && value[3] != ' '))
                return fail("Status is not three digits");
            int code = (value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0');
            if (code < 200 || code > 599) return fail("Status outside 200-599");
            head_.status = code;
            std::string_view reason = value.size() > 3 ? trim(value.substr(4)) : std::string_view();
            head_.reason.clear();
            for (char c : reason)
                if (static_cast<unsigned char>(c) >= 0x20 && c != 0x7f) head_.reason += c;
            if (head_.reason.size() > 128) head_.reason.resize(128);
        } else if (iequals(name, "Location")) {
            if (seen_location) return fail("Location given twice");
            seen_location = true;
            if (value.empty()) continue;  // an empty CGI field is no field (RFC 3875 §6.3)
            head_.location = std::string(value);
            head_.headers.emplace_back("Location", std::string(value));
        } else if (iequals(name, "Content-Type")) {
            if (head_.has_content_type) return fail("Content-Type given twice");
            if (value.empty()) continue;
            head_.has_content_type = true;
            head_.headers.emplace_back("Content-Type", std::string(value));
        } else if (iequals(name, "Content-Length")) {
            uint64_t n = 0;
            auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
            if (value.empty() || ec != std::errc() || end != value.data() + value.size())
                return fail("Content-Length is not a number");
            if (head_.content_length && *head_.content_length != n) return fail("two different Content-Length values");
            head_.content_length = n;
        } else if (iequals(name, "X-Mongrel2-Deliver")) {
            if (head_.deliver) return fail("X-Mongrel2-Deliver given twice");
            auto ids = parse_deliver_ids(value);
            if (!ids) return fail("X-Mongrel2-Deliver holds something other than decimal ids");
            head_.deliver = std::move(*ids);
        } else if (iequals(name, "X-Sendfile") || iequals(name, "X-Accel-Redirect") ||
                   iequals(name, "X-LIGHTTPD-send-file")) {
            if (head_.sendfile) return fail("X-Sendfile given twice");
            if (!value.empty()) head_.sendfile = std::string(value);
        } else if (!is_dropped_field(name)) {
            head_.headers.emplace_back(std::string(name), std::string(value));
        }
    }
    if (head_.sendfile && head_.deliver) return fail("X-Sendfile and X-Mongrel2-Deliver together");
    if (lines == 0) return fail("output starts with an empty line: no header fields");
    if (!seen_status && !head_.location && !head_.has_content_type && !head_.deliver && !head_.sendfile)
        return fail("no Status, Location or Content-Type field");

    if (head_.location && !seen_status) {
        const std::string& loc = *head_.location;
        if (loc.size() > 1 && loc[0] == '/' && loc[1] != '/') {
            head_.kind = ResponseKind::LocalRedirect;
        } else if (loc == "/") {
            head_.kind = ResponseKind::LocalRedirect;
        } else {
            head_.kind = ResponseKind::ClientRedirect;
            head_.status = 302;
        }
    }
    state_ = State::Done;
    return state_;
}

}  // namespace m2b
