// One message from Mongrel2's PUSH socket, decoded:
//   SENDER SP CONN_ID SP PATH SP HEADERS BODY-NETSTRING
// where HEADERS is a JSON netstring or a tnetstring dict (mongrel2-protocol.md §2.1).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "bridge/headers.h"

namespace m2b {

enum class MessageKind {
    Http,        // an HTTP request for the app
    JsonSocket,  // METHOD JSON on a JSON socket route (`@chat`): body is the JSON text
    Disconnect,  // `@*` {"type":"disconnect"}: the client is gone, never answered
    Credits,     // `@*` {"type":"credits"}: bytes Mongrel2 wrote (download.flow_control)
    WebSocket,   // WEBSOCKET_HANDSHAKE / WEBSOCKET frames: not served by m2bridge
    Other,       // XML sockets and unknown `@*` notices: logged and dropped
};

struct Request {
    MessageKind kind = MessageKind::Http;
    std::string sender;
    uint64_t conn_id = 0;
    std::string path;   // the PATH token of the message line
    HeaderList headers;
    std::string body;
    uint64_t credits = 0;  // for Credits: DOWNLOAD_CREDITS

    const std::string* header(std::string_view name) const { return find_header(headers, name); }
    std::string_view header_or(std::string_view name, std::string_view fallback) const {
        const std::string* v = header(name);
        return v ? std::string_view(*v) : fallback;
    }
};

struct ParseError {
    std::string what;
};

std::variant<Request, ParseError> parse_m2_message(std::string_view message);

}  // namespace m2b
