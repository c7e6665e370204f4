#include "bridge/m2_reply.h"

namespace m2b {

namespace {

std::string id_list(std::span<const uint64_t> ids, bool extended) {
    std::string list = extended ? "X" : "";
    for (uint64_t id : ids) {
        if (!list.empty()) list += ' ';
        list += std::to_string(id);
    }
    return list;
}

std::string message(std::string_view sender, std::string_view list, std::string_view body) {
    std::string out;
    out.reserve(sender.size() + list.size() + body.size() + 16);
    out += sender;
    out += ' ';
    out += std::to_string(list.size());
    out += ':';
    out += list;
    out += ", ";
    out += body;
    return out;
}

std::vector<std::string> many(std::string_view sender, std::span<const uint64_t> ids, std::string_view body,
                              size_t max_ids, bool extended) {
    std::vector<std::string> out;
    if (max_ids == 0) max_ids = kMaxIdsPerMessage;
    for (size_t start = 0; start < ids.size(); start += max_ids) {
        auto slice = ids.subspan(start, std::min(max_ids, ids.size() - start));
        out.push_back(message(sender, id_list(slice, extended), body));
    }
    return out;
}

// ["ctl", {"keep-alive": true}] as a tnetstring.
constexpr std::string_view kKeepAliveBody = "31:3:ctl,21:10:keep-alive,4:true!}]";
// ["ctl", {"cancel": true}]
constexpr std::string_view kCancelBody = "26:3:ctl,16:6:cancel,4:true!}]";

}  // namespace

std::string encode_reply(std::string_view sender, uint64_t conn_id, std::string_view body) {
    return message(sender, std::to_string(conn_id), body);
}

std::string reply_envelope(std::string_view sender, uint64_t conn_id) {
    return message(sender, std::to_string(conn_id), "");
}

std::string encode_reply_to(std::string_view sender, std::span<const uint64_t> ids, std::string_view body) {
    return message(sender, id_list(ids, false), body);
}

std::string reply_envelope_to(std::string_view sender, std::span<const uint64_t> ids) {
    return message(sender, id_list(ids, false), "");
}

std::vector<std::string> encode_reply_many(std::string_view sender, std::span<const uint64_t> ids,
                                           std::string_view body, size_t max_ids) {
    return many(sender, ids, body, max_ids, false);
}

std::vector<std::string> encode_keepalive(std::string_view sender, std::span<const uint64_t> ids,
                                          size_t max_ids) {
    return many(sender, ids, kKeepAliveBody, max_ids, true);
}

std::vector<std::string> encode_cancel(std::string_view sender, std::span<const uint64_t> ids, size_t max_ids) {
    return many(sender, ids, kCancelBody, max_ids, true);
}

}  // namespace m2b
