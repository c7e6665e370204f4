#include "bridge/netstring.h"

namespace m2b {

std::optional<LengthPrefixed> parse_length_prefixed(std::string_view in) {
    size_t i = 0;
    size_t len = 0;
    while (i < in.size() && in[i] >= '0' && in[i] <= '9') {
        if (i == 9) return std::nullopt;                // 10 digits: longer than any message we accept
        len = len * 10 + static_cast<size_t>(in[i] - '0');
        ++i;
    }
    if (i == 0 || i >= in.size() || in[i] != ':') return std::nullopt;
    if (i > 1 && in[0] == '0') return std::nullopt;     // "007:" is not canonical
    ++i;
    if (in.size() - i < len + 1) return std::nullopt;   // payload plus the tag byte
    LengthPrefixed out;
    out.payload = in.substr(i, len);
    out.tag = in[i + len];
    out.rest = in.substr(i + len + 1);
    return out;
}

std::optional<LengthPrefixed> parse_netstring(std::string_view in) {
    auto item = parse_length_prefixed(in);
    if (!item || item->tag != ',') return std::nullopt;
    return item;
}

void append_netstring(std::string& out, std::string_view bytes) {
    out += std::to_string(bytes.size());
    out += ':';
    out += bytes;
    out += ',';
}

namespace {

bool is_scalar_tag(char tag) {
    return tag == ',' || tag == '#' || tag == '!' || tag == '^' || tag == '~';
}

}  // namespace

std::optional<std::vector<TnetEntry>> parse_tnetstring_dict_payload(std::string_view payload) {
    std::vector<TnetEntry> entries;
    entries.reserve(24);  // more than Mongrel2's own headers and a browser's
    std::string_view rest = payload;
    while (!rest.empty()) {
        auto key = parse_length_prefixed(rest);
        if (!key || key->tag != ',') return std::nullopt;
        auto value = parse_length_prefixed(key->rest);
        if (!value) return std::nullopt;
        TnetEntry entry{key->payload, value->payload, false};
        if (value->tag == ']') {
            entry.list = true;
            std::string_view items = value->payload;
            while (!items.empty()) {
                auto item = parse_length_prefixed(items);
                if (!item || !is_scalar_tag(item->tag)) return std::nullopt;
                items = item->rest;
            }
        } else if (!is_scalar_tag(value->tag)) {
            return std::nullopt;
        }
        entries.push_back(entry);
        rest = value->rest;
    }
    return entries;
}

}  // namespace m2b
