#include "adapters/fastcgi/record.h"

#include <algorithm>
#include <cstring>

namespace m2b::fcgi {

namespace {

void write_header(char* at, uint8_t type, uint16_t request_id, size_t content_len, uint8_t padding) {
    const char h[kHeaderLen] = {
        static_cast<char>(kVersion),
        static_cast<char>(type),
        static_cast<char>(request_id >> 8),
        static_cast<char>(request_id & 0xFF),
        static_cast<char>((content_len >> 8) & 0xFF),
        static_cast<char>(content_len & 0xFF),
        static_cast<char>(padding),
        0,
    };
    std::memcpy(at, h, kHeaderLen);
}

// Pads to a multiple of 8 as the spec recommends, never past 65535 in total.
uint8_t padding_for(size_t content_len) {
    size_t padding = (8 - content_len % 8) % 8;
    return content_len + padding > 0xFFFF ? 0 : static_cast<uint8_t>(padding);
}

void append_header(std::string& out, uint8_t type, uint16_t request_id, size_t content_len, uint8_t padding) {
    out.append(kHeaderLen, '\0');
    write_header(out.data() + out.size() - kHeaderLen, type, request_id, content_len, padding);
}

void append_length(std::string& out, size_t len) {
    if (len <= 127) {
        out += static_cast<char>(len);
    } else {
        out += static_cast<char>(0x80 | ((len >> 24) & 0x7F));
        out += static_cast<char>((len >> 16) & 0xFF);
        out += static_cast<char>((len >> 8) & 0xFF);
        out += static_cast<char>(len & 0xFF);
    }
}

size_t pair_size(std::string_view name, std::string_view value) {
    return (name.size() > 127 ? 4 : 1) + (value.size() > 127 ? 4 : 1) + name.size() + value.size();
}

}  // namespace

void append_record(std::string& out, uint8_t type, uint16_t request_id, std::string_view content) {
    uint8_t padding = padding_for(content.size());
    append_header(out, type, request_id, content.size(), padding);
    out += content;
    out.append(padding, '\0');
}

void append_begin_request(std::string& out, uint16_t request_id, bool keep_conn) {
    char body[8] = {0, static_cast<char>(kRoleResponder), static_cast<char>(keep_conn ? kKeepConn : 0), 0, 0, 0, 0, 0};
    append_record(out, kBeginRequest, request_id, std::string_view(body, 8));
}

void append_pair(std::string& out, std::string_view name, std::string_view value) {
    append_length(out, name.size());
    append_length(out, value.size());
    out += name;
    out += value;
}

std::optional<std::string> encode_params(uint16_t request_id, const Params& params) {
    // Sized once, and the pairs written straight into their records: no buffer per record.
    size_t content = 0;
    for (const auto& [name, value] : params) {
        size_t size = pair_size(name, value);
        if (size > kMaxContent) return std::nullopt;
        content += size;
    }
    // Records of nearly full pairs can be more than this (one string growth then, no error).
    std::string out;
    out.reserve(records_size(content) + kHeaderLen);  // and the closing empty record
    size_t record = std::string::npos;  // where the open record's header is
    auto close_record = [&] {
        size_t len = out.size() - record - kHeaderLen;
        uint8_t padding = padding_for(len);
        write_header(out.data() + record, kParams, request_id, len, padding);
        out.append(padding, '\0');
    };
    for (const auto& [name, value] : params) {
        size_t size = pair_size(name, value);
        if (record == std::string::npos || out.size() - record - kHeaderLen + size > kMaxContent) {
            if (record != std::string::npos) close_record();
            record = out.size();
            out.append(kHeaderLen, '\0');
        }
        append_pair(out, name, value);
    }
    if (record != std::string::npos) close_record();
    append_record(out, kParams, request_id, {});
    return out;
}

void append_stdin(std::string& out, uint16_t request_id, std::string_view data) {
    while (!data.empty()) {
        size_t n = std::min(data.size(), kMaxContent);
        append_record(out, kStdin, request_id, data.substr(0, n));
        data.remove_prefix(n);
    }
}

void append_stdin_end(std::string& out, uint16_t request_id) { append_record(out, kStdin, request_id, {}); }

std::optional<Params> decode_pairs(std::string_view content) {
    Params out;
    size_t i = 0;
    auto read_length = [&](size_t& len) -> bool {
        if (i >= content.size()) return false;
        auto b0 = static_cast<unsigned char>(content[i]);
        if (b0 < 0x80) {
            len = b0;
            i += 1;
            return true;
        }
        if (content.size() - i < 4) return false;
        len = (static_cast<size_t>(b0 & 0x7F) << 24) | (static_cast<size_t>(static_cast<unsigned char>(content[i + 1])) << 16) |
              (static_cast<size_t>(static_cast<unsigned char>(content[i + 2])) << 8) |
              static_cast<size_t>(static_cast<unsigned char>(content[i + 3]));
        i += 4;
        return true;
    };
    while (i < content.size()) {
        size_t name_len = 0, value_len = 0;
        if (!read_length(name_len) || !read_length(value_len)) return std::nullopt;
        // Compare against what is left, never add lengths (CVE-2025-23016 was an overflow here).
        size_t left = content.size() - i;
        if (name_len > left || value_len > left - name_len) return std::nullopt;
        out.emplace_back(std::string(content.substr(i, name_len)), std::string(content.substr(i + name_len, value_len)));
        i += name_len + value_len;
    }
    return out;
}

std::optional<EndRequest> decode_end_request(std::string_view content) {
    if (content.size() < 8) return std::nullopt;
    auto b = [&](size_t k) { return static_cast<uint32_t>(static_cast<unsigned char>(content[k])); };
    EndRequest end;
    end.app_status = (b(0) << 24) | (b(1) << 16) | (b(2) << 8) | b(3);
    end.protocol_status = static_cast<uint8_t>(b(4));
    return end;
}

char* RecordReader::prepare(size_t n) {
    if (start_ == end_) {
        start_ = end_ = 0;
        // Grown for a burst of partial records: not kept for the rest of a long exchange.
        if (capacity_ > 2 * n) {
            buffer_.reset();
            capacity_ = 0;
        }
    }
    // Records already returned are dropped only when room runs out: the partial
    // one left moves to the front, once every few reads rather than every read.
    if (capacity_ - end_ < n && start_ > 0) {
        std::memmove(buffer_.get(), buffer_.get() + start_, end_ - start_);
        end_ -= start_;
        start_ = 0;
    }
    if (capacity_ - end_ < n) {
        size_t capacity = std::max(end_ + n, capacity_ * 2);
        auto bigger = std::make_unique_for_overwrite<char[]>(capacity);
        if (end_) std::memcpy(bigger.get(), buffer_.get(), end_);
        buffer_ = std::move(bigger);
        capacity_ = capacity;
    }
    return buffer_.get() + end_;
}

void RecordReader::feed(std::string_view bytes) {
    if (bytes.empty()) return;
    std::memcpy(prepare(bytes.size()), bytes.data(), bytes.size());
    commit(bytes.size());
}

RecordReader::Result RecordReader::next(Record& out) {
    if (!error_.empty()) return Result::Error;
    std::string_view avail(buffer_.get() + start_, end_ - start_);
    if (avail.size() < kHeaderLen) return Result::NeedMore;
    auto u8 = [&](size_t k) { return static_cast<unsigned char>(avail[k]); };
    if (u8(0) != kVersion) {
        error_ = "record with version " + std::to_string(u8(0));
        return Result::Error;
    }
    size_t content_len = (static_cast<size_t>(u8(4)) << 8) | u8(5);
    size_t padding = u8(6);
    size_t total = kHeaderLen + content_len + padding;
    if (avail.size() < total) return Result::NeedMore;
    out.type = u8(1);
    out.request_id = static_cast<uint16_t>((u8(2) << 8) | u8(3));
    out.content = avail.substr(kHeaderLen, content_len);
    start_ += total;
    return Result::Record;
}

}  // namespace m2b::fcgi
