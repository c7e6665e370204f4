// FastCGI 1.0 records (the Open Market spec; constants from libfcgi's fastcgi.h),
// written the way php-fpm demands: a name-value pair never spans two PARAMS
// records, and content plus padding never exceeds 65535 (cgi-fastcgi.md §0).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace m2b::fcgi {

inline constexpr uint8_t kVersion = 1;
inline constexpr size_t kHeaderLen = 8;
inline constexpr size_t kMaxContent = 0xFFF8;  // largest 8-aligned content, as php-fpm writes

// At most what `content` bytes of one stream take as records split at kMaxContent: a header
// and up to 7 bytes of padding each. For reserving a buffer once.
constexpr size_t records_size(size_t content) { return content + (content / kMaxContent + 1) * (kHeaderLen + 7); }

enum RecordType : uint8_t {
    kBeginRequest = 1,
    kAbortRequest = 2,
    kEndRequest = 3,
    kParams = 4,
    kStdin = 5,
    kStdout = 6,
    kStderr = 7,
    kData = 8,
    kGetValues = 9,
    kGetValuesResult = 10,
    kUnknownType = 11,
};

enum ProtocolStatus : uint8_t {
    kRequestComplete = 0,
    kCantMpxConn = 1,
    kOverloaded = 2,
    kUnknownRole = 3,
};

inline constexpr uint16_t kRoleResponder = 1;
inline constexpr uint8_t kKeepConn = 1;

using Params = std::vector<std::pair<std::string, std::string>>;

void append_record(std::string& out, uint8_t type, uint16_t request_id, std::string_view content);
void append_begin_request(std::string& out, uint16_t request_id, bool keep_conn);

// All PARAMS records for `params`, and the empty PARAMS that ends the stream.
// Fails (nullopt) if one pair cannot fit a single record.
std::optional<std::string> encode_params(uint16_t request_id, const Params& params);

// STDIN records carrying `data` (split at kMaxContent); empty data writes nothing.
void append_stdin(std::string& out, uint16_t request_id, std::string_view data);
// The empty STDIN record that ends the body.
void append_stdin_end(std::string& out, uint16_t request_id);

// Name-value pair encoding (1-byte length up to 127, else 4 bytes with the top bit).
void append_pair(std::string& out, std::string_view name, std::string_view value);
// Decodes a run of pairs (GET_VALUES_RESULT); nullopt on a length past the end.
std::optional<Params> decode_pairs(std::string_view content);

struct Record {
    uint8_t type = 0;
    uint16_t request_id = 0;
    std::string_view content;  // valid until the next feed() or prepare()
};

struct EndRequest {
    uint32_t app_status = 0;
    uint8_t protocol_status = 0;
};
std::optional<EndRequest> decode_end_request(std::string_view content);

// Splits a byte stream from the application into records, whatever the read
// boundaries. Records are views into its buffer, which the socket is read
// into directly (prepare/commit): response bytes are not copied on the way.
// It holds what one read brings plus at most one partial record.
class RecordReader {
public:
    // Room for `n` more bytes at the end of the buffer; then commit(how many arrived).
    char* prepare(size_t n);
    void commit(size_t n) { end_ += n; }
    // Appends bytes (prepare + copy + commit); call next() until it returns nothing.
    void feed(std::string_view bytes);
    enum class Result { Record, NeedMore, Error };
    Result next(Record& out);
    const std::string& error() const { return error_; }
    size_t buffered() const { return end_ - start_; }

private:
    std::unique_ptr<char[]> buffer_;  // not a std::string: growing it would zero what recv overwrites
    size_t capacity_ = 0;
    size_t start_ = 0;  // first byte not yet returned as a record
    size_t end_ = 0;    // end of the bytes read
    std::string error_;
};

}  // namespace m2b::fcgi
