#include "bridge/m2_request.h"

#include <charconv>

#include "bridge/json_headers.h"
#include "bridge/netstring.h"

namespace m2b {

namespace {

// Splits off the text before the next single space.
bool take_token(std::string_view& in, std::string_view& token) {
    size_t sp = in.find(' ');
    if (sp == std::string_view::npos || sp == 0) return false;
    token = in.substr(0, sp);
    in.remove_prefix(sp + 1);
    return true;
}

bool valid_sender(std::string_view s) {
    for (char c : s)
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return false;
    return true;
}

std::string_view notice_type(std::string_view body) {
    // The notice bodies are fixed JSON written by Mongrel2 itself.
    if (body.find("\"disconnect\"") != std::string_view::npos) return "disconnect";
    if (body.find("\"credits\"") != std::string_view::npos) return "credits";
    return "";
}

}  // namespace

std::variant<Request, ParseError> parse_m2_message(std::string_view message) {
    Request req;
    std::string_view rest = message;
    std::string_view sender, conn, path;
    if (!take_token(rest, sender) || !take_token(rest, conn) || !take_token(rest, path))
        return ParseError{"message line is not SENDER ID PATH"};
    if (!valid_sender(sender)) return ParseError{"sender has characters outside [A-Za-z0-9-]"};
    uint64_t id = 0;
    auto [end, ec] = std::from_chars(conn.data(), conn.data() + conn.size(), id);
    if (ec != std::errc() || end != conn.data() + conn.size() || id > UINT32_MAX)
        return ParseError{"connection id is not a decimal number"};

    auto head = parse_length_prefixed(rest);
    if (!head) return ParseError{"header block is not a netstring"};
    if (head->tag == ',') {
        auto headers = parse_json_headers(head->payload);
        if (!headers) return ParseError{"header block is not a JSON object of strings"};
        req.headers = std::move(*headers);
    } else if (head->tag == '}') {
        auto entries = parse_tnetstring_dict_payload(head->payload);
        if (!entries) return ParseError{"header block is not a tnetstring dict of strings"};
        req.headers.reserve(entries->size());
        for (const auto& e : *entries) {
            Header& h = req.headers.emplace_back();
            h.name = e.key;
            for_each_value(e, [&](std::string_view v) { h.values.emplace_back(v); });
        }
    } else {
        return ParseError{"header block has an unknown type tag"};
    }
    auto body = parse_netstring(head->rest);
    if (!body) return ParseError{"body is not a netstring"};
    if (!body->rest.empty()) return ParseError{"bytes after the body netstring"};

    req.sender = std::string(sender);
    req.conn_id = id;
    req.path = std::string(path);
    req.body = std::string(body->payload);

    const std::string* method = req.header("METHOD");
    if (!method) return ParseError{"no METHOD header"};
    if (*method == "JSON") {
        if (req.path == "@*") {
            auto type = notice_type(req.body);
            if (type == "disconnect") {
                req.kind = MessageKind::Disconnect;
            } else if (type == "credits") {
                req.kind = MessageKind::Credits;
                const std::string* credits = req.header("DOWNLOAD_CREDITS");
                if (!credits) return ParseError{"credits notice without DOWNLOAD_CREDITS"};
                auto [e2, ec2] = std::from_chars(credits->data(), credits->data() + credits->size(), req.credits);
                if (ec2 != std::errc() || e2 != credits->data() + credits->size())
                    return ParseError{"DOWNLOAD_CREDITS is not a number"};
            } else {
                req.kind = MessageKind::Other;
            }
        } else {
            req.kind = MessageKind::JsonSocket;
        }
    } else if (*method == "WEBSOCKET_HANDSHAKE" || *method == "WEBSOCKET") {
        req.kind = MessageKind::WebSocket;
    } else if (*method == "XML") {
        req.kind = MessageKind::Other;
    } else {
        req.kind = MessageKind::Http;
        if (req.path.empty() || req.path[0] != '/') return ParseError{"HTTP request path does not start with '/'"};
    }
    return req;
}

}  // namespace m2b
