#include "adapters/stream/uwsgi.h"

namespace m2b::uwsgi {

namespace {

void put_u16(std::string& out, size_t v) {
    out += static_cast<char>(v & 0xFF);
    out += static_cast<char>((v >> 8) & 0xFF);
}

}  // namespace

std::optional<std::string> encode_head(const CgiEnv& env, uint64_t body_size, std::string& error) {
    std::string packet(4, '\0');  // modifier1 = 0, size filled in below, modifier2 = 0
    auto add = [&](std::string_view name, std::string_view value) {
        if (name.size() > kMaxVars || value.size() > kMaxVars) {
            error = "request variable " + std::string(name.substr(0, 64)) + " is longer than uwsgi's 65535 bytes";
            return false;
        }
        put_u16(packet, name.size());
        packet.append(name);
        put_u16(packet, value.size());
        packet.append(value);
        if (packet.size() - 4 > kMaxVars) {
            error = "request variables take more than uwsgi's 65535 bytes";
            return false;
        }
        return true;
    };
    bool has_length = false;
    for (const auto& [name, value] : env) {
        if (!add(name, value)) return std::nullopt;
        has_length = has_length || name == "CONTENT_LENGTH";
    }
    // uWSGI reads as many body bytes as CONTENT_LENGTH says, and none without it.
    if (!has_length && body_size > 0 && !add("CONTENT_LENGTH", std::to_string(body_size))) return std::nullopt;
    size_t size = packet.size() - 4;
    packet[1] = static_cast<char>(size & 0xFF);
    packet[2] = static_cast<char>((size >> 8) & 0xFF);
    return packet;
}

}  // namespace m2b::uwsgi
