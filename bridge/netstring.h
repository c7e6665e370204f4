// Netstrings (`len:bytes,`) and the subset of tnetstrings Mongrel2 writes.
// Pure functions over byte spans: no allocation beyond the result, no I/O.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace m2b {

// One length-prefixed item: `payload` is its content, `tag` the byte after it
// (',' for a netstring; ',', '#', '!', '~', ']', '}' ... for a tnetstring) and
// `rest` whatever follows the tag.
struct LengthPrefixed {
    std::string_view payload;
    char tag = 0;
    std::string_view rest;
};

// Parses `digits ":" payload tag` from the front of `in`. Rejects leading
// zeros (except "0"), more than 9 digits, and a payload running past the end.
std::optional<LengthPrefixed> parse_length_prefixed(std::string_view in);

// A netstring: the tag must be ','.
std::optional<LengthPrefixed> parse_netstring(std::string_view in);

// Appends `len:bytes,` to `out`.
void append_netstring(std::string& out, std::string_view bytes);

// A tnetstring dict whose values are strings or lists of strings, the only
// shape Mongrel2 writes for request headers. Numbers and booleans are kept as
// their text. Anything else (nested dicts, floats inside lists...) is an error.
// An entry points into the payload; a list stays encoded (already checked), so
// a header costs no allocation here.
struct TnetEntry {
    std::string_view key;
    std::string_view value;  // a scalar's text, or a list's encoded items
    bool list = false;
};
std::optional<std::vector<TnetEntry>> parse_tnetstring_dict_payload(std::string_view payload);

// Calls fn(std::string_view) for each value of an entry: the scalar, or each item of the list.
template <class Fn>
void for_each_value(const TnetEntry& entry, Fn&& fn) {
    if (!entry.list) {
        fn(entry.value);
        return;
    }
    for (std::string_view items = entry.value; !items.empty();) {
        auto item = parse_length_prefixed(items);
        if (!item) return;  // cannot happen: the parser checked every item
        fn(item->payload);
        items = item->rest;
    }
}

}  // namespace m2b
