// Messages for Mongrel2's SUB socket (mongrel2-protocol.md §3):
//   SENDER SP LEN ":" ID (SP ID)* "," SP BODY
// Mongrel2 drops a whole message naming more than 128 ids, so id lists are cut
// into messages of at most `kMaxIdsPerMessage`.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace m2b {

inline constexpr size_t kMaxIdsPerMessage = 128;

// One message to one connection. An empty body asks Mongrel2 to close it.
std::string encode_reply(std::string_view sender, uint64_t conn_id, std::string_view body);
// What comes before the body in it: "SENDER LEN:ID, ".
std::string reply_envelope(std::string_view sender, uint64_t conn_id);

// One message naming several connections (the caller keeps it to ≤128 ids).
std::string encode_reply_to(std::string_view sender, std::span<const uint64_t> ids, std::string_view body);
std::string reply_envelope_to(std::string_view sender, std::span<const uint64_t> ids);

// The same body to many connections: one message per 128 ids. No ids, no message.
std::vector<std::string> encode_reply_many(std::string_view sender, std::span<const uint64_t> ids,
                                           std::string_view body, size_t max_ids = kMaxIdsPerMessage);

// `ctl keep-alive` (an extended "X" message) for many ids, refreshing Mongrel2's
// idle timer for connections whose backend is still working.
std::vector<std::string> encode_keepalive(std::string_view sender, std::span<const uint64_t> ids,
                                          size_t max_ids = kMaxIdsPerMessage);

// `ctl cancel`: Mongrel2 closes these connections at once, dropping what is
// queued for them (an empty reply would wait behind bytes a client never reads).
std::vector<std::string> encode_cancel(std::string_view sender, std::span<const uint64_t> ids,
                                       size_t max_ids = kMaxIdsPerMessage);

}  // namespace m2b
