#include "bridge/zmtp.h"

#include <cstring>
#include <strings.h>

namespace m2b::zmtp {

namespace {
constexpr unsigned char kMore = 0x01, kLong = 0x02, kCommand = 0x04;
constexpr std::string_view kNull = "NULL";

uint64_t read_be64(const char* p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
    return v;
}

uint32_t read_be32(const char* p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
    return v;
}
}  // namespace

std::string greeting() {
    std::string g(kGreetingSize, '\0');
    g[0] = '\xff';
    g[9] = '\x7f';
    g[10] = 3;  // major
    g[11] = 1;  // minor
    std::memcpy(&g[12], kNull.data(), kNull.size());  // mechanism, zero-padded to 20
    // g[32], as-server, stays 0: we connect; the filler stays zero.
    return g;
}

std::string ready_command(std::string_view socket_type) {
    std::string body;
    body += '\x05';
    body += "READY";
    body += '\x0b';
    body += "Socket-Type";
    uint32_t n = static_cast<uint32_t>(socket_type.size());
    for (int shift = 24; shift >= 0; shift -= 8) body += static_cast<char>((n >> shift) & 0xff);
    body += socket_type;
    char head[kMaxFrameHead];
    size_t head_size = write_frame_head(head, body.size(), true);
    return std::string(head, head_size) + body;
}

Parse check_greeting(std::string_view b, std::string& why) {
    // The signature is checked as soon as it is there: a peer that is not
    // ZMTP at all is told apart without waiting for 64 bytes it may never send.
    if (!b.empty() && static_cast<unsigned char>(b[0]) != 0xff) {
        why = "not a ZeroMQ peer (no ZMTP signature)";
        return Parse::Bad;
    }
    if (b.size() >= 10 && (static_cast<unsigned char>(b[9]) & 0x01) == 0) {
        why = "not a ZeroMQ peer (no ZMTP signature)";
        return Parse::Bad;
    }
    if (b.size() >= 11 && static_cast<unsigned char>(b[10]) < 3) {
        why = "ZMTP " + std::to_string(static_cast<unsigned char>(b[10])) + ".x peer; 3.0 or later is needed";
        return Parse::Bad;
    }
    if (b.size() < kGreetingSize) return Parse::NeedMore;
    std::string_view mechanism = b.substr(12, 20);
    size_t end = mechanism.find('\0');
    mechanism = mechanism.substr(0, end);
    if (mechanism != kNull) {
        why = "the peer wants the " + std::string(mechanism) + " security mechanism; m2bridge speaks NULL only";
        return Parse::Bad;
    }
    return Parse::Ok;
}

Parse parse_frame_head(std::string_view b, FrameHead& head) {
    if (b.empty()) return Parse::NeedMore;
    auto flags = static_cast<unsigned char>(b[0]);
    if (flags & ~(kMore | kLong | kCommand)) return Parse::Bad;
    if ((flags & kCommand) && (flags & kMore)) return Parse::Bad;
    head.more = flags & kMore;
    head.command = flags & kCommand;
    if (flags & kLong) {
        if (b.size() < 9) return Parse::NeedMore;
        head.size = read_be64(b.data() + 1);
        if (head.size >> 63) return Parse::Bad;  // the spec's limit: the top bit is zero
        head.head_size = 9;
    } else {
        if (b.size() < 2) return Parse::NeedMore;
        head.size = static_cast<unsigned char>(b[1]);
        head.head_size = 2;
    }
    return Parse::Ok;
}

size_t write_frame_head(char* out, uint64_t size, bool command) {
    unsigned char flags = command ? kCommand : 0;
    if (size <= 255) {
        out[0] = static_cast<char>(flags);
        out[1] = static_cast<char>(size);
        return 2;
    }
    out[0] = static_cast<char>(flags | kLong);
    for (int i = 0; i < 8; ++i) out[1 + i] = static_cast<char>((size >> (56 - 8 * i)) & 0xff);
    return 9;
}

bool parse_endpoint(std::string_view text, Endpoint& out, std::string& why) {
    out = Endpoint{};
    size_t scheme_end = text.find("://");
    if (scheme_end == std::string_view::npos) {
        why = "not a ZeroMQ endpoint (tcp://HOST:PORT or ipc://PATH)";
        return false;
    }
    std::string scheme(text.substr(0, scheme_end));
    std::string_view rest = text.substr(scheme_end + 3);
    if (rest.empty()) {
        why = "nothing after " + scheme + "://";
        return false;
    }
    if (scheme == "ipc") {
        if (rest.size() > 107) {  // sockaddr_un's sun_path, with its NUL
            why = "an ipc path of 1 to 107 bytes is needed";
            return false;
        }
        out.ipc = true;
        out.path = std::string(rest);
        return true;
    }
    if (scheme != "tcp") {
        why = "unknown transport " + scheme + " (tcp or ipc)";
        return false;
    }
    size_t colon = rest.rfind(':');
    std::string_view port = colon == std::string_view::npos ? "" : rest.substr(colon + 1);
    bool digits = !port.empty() && port.size() <= 5 && port.find_first_not_of("0123456789") == std::string_view::npos;
    int number = digits ? std::stoi(std::string(port)) : 0;
    if (colon == 0 || number < 1 || number > 65535) {
        why = "expected tcp://HOST:PORT with a port from 1 to 65535";
        return false;
    }
    std::string_view host = rest.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
        out.ipv6_literal = true;
    }
    if (host.empty() || host == "*") {
        why = "a host to connect to is needed";
        return false;
    }
    out.host = std::string(host);
    out.port = std::string(port);
    return true;
}

std::string_view command_name(std::string_view body) {
    if (body.empty()) return {};
    size_t n = static_cast<unsigned char>(body[0]);
    if (n == 0 || body.size() < 1 + n) return {};
    return body.substr(1, n);
}

bool ready_socket_type(std::string_view body, std::string_view& type) {
    std::string_view name = command_name(body);
    if (name != "READY") return false;
    std::string_view rest = body.substr(1 + name.size());
    bool found = false;
    while (!rest.empty()) {
        size_t name_len = static_cast<unsigned char>(rest[0]);
        if (name_len == 0 || rest.size() < 1 + name_len + 4) return false;
        std::string_view prop = rest.substr(1, name_len);
        uint32_t value_len = read_be32(rest.data() + 1 + name_len);
        size_t at = 1 + name_len + 4;
        if (rest.size() - at < value_len) return false;
        // Property names are case-insensitive (ZMTP 3.1).
        if (prop.size() == 11 && strncasecmp(prop.data(), "Socket-Type", 11) == 0) {
            type = rest.substr(at, value_len);
            found = true;
        }
        rest.remove_prefix(at + value_len);
    }
    return found;
}

std::string pong_for(std::string_view ping_body) {
    // PING: name, a 2-byte TTL, then up to 16 bytes of context.
    std::string_view context;
    if (ping_body.size() > 5 + 2) context = ping_body.substr(5 + 2, 16);
    std::string body = std::string("\x04PONG", 5);
    body += context;
    char head[kMaxFrameHead];
    size_t head_size = write_frame_head(head, body.size(), true);
    return std::string(head, head_size) + body;
}

}  // namespace m2b::zmtp
