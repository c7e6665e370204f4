// ZMTP 3.1 (rfc.zeromq.org/spec/37), the part a Mongrel2 handler speaks: the
// NULL mechanism, single-frame messages, and the few commands a libzmq peer
// sends; and the endpoints it connects to. Pure: bytes in, values out; the
// sockets are in zmtp_connection.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace m2b::zmtp {

constexpr size_t kGreetingSize = 64;
constexpr size_t kMaxFrameHead = 9;  // flags and an 8-byte size

// Our greeting: version 3.1, mechanism NULL, as a client.
std::string greeting();
// The NULL mechanism's READY command, with our Socket-Type ("PULL", "PUB").
std::string ready_command(std::string_view socket_type);

enum class Parse { NeedMore, Ok, Bad };

// The peer's greeting: a ZMTP 3 signature and the NULL mechanism. `why` says
// what was wrong when Bad.
Parse check_greeting(std::string_view bytes, std::string& why);

struct FrameHead {
    bool more = false;     // another frame of the same message follows
    bool command = false;  // a command, not a message frame
    uint64_t size = 0;     // of the body
    size_t head_size = 0;  // bytes of flags and size before the body
};
// The head of the frame at the start of `bytes`. Bad for reserved flag bits,
// a command with MORE, or a size with its top bit set.
Parse parse_frame_head(std::string_view bytes, FrameHead& head);
// Writes a frame head for `size` bytes into `out` and returns its length.
size_t write_frame_head(char* out, uint64_t size, bool command = false);

// An endpoint m2bridge connects to: tcp://HOST:PORT (HOST a name, an IPv4
// address or [IPv6]) or ipc://PATH. One grammar for the config check and the
// sockets.
struct Endpoint {
    bool ipc = false;
    std::string path;           // ipc: as written (@NAME: the abstract namespace)
    std::string host, port;     // tcp: the host without brackets
    bool ipv6_literal = false;  // tcp: the host was written [like::this]
};
// False, with `why`, for anything else.
bool parse_endpoint(std::string_view text, Endpoint& out, std::string& why);

// A command's name ("READY", "PING", ...); empty when the body is malformed.
std::string_view command_name(std::string_view body);
// READY's Socket-Type property; false when the properties are malformed or it is missing.
bool ready_socket_type(std::string_view body, std::string_view& type);
// The PONG that answers a PING: its context echoed, as ZMTP 3.1 says.
std::string pong_for(std::string_view ping_body);

}  // namespace m2b::zmtp
