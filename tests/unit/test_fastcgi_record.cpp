#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>

#include "adapters/fastcgi/record.h"

using namespace m2b;
using namespace m2b::fcgi;

namespace {

std::vector<std::pair<uint8_t, std::string>> read_all(std::string_view bytes, size_t step = 1 << 20) {
    RecordReader reader;
    std::vector<std::pair<uint8_t, std::string>> out;
    for (size_t i = 0; i < bytes.size(); i += step) {
        reader.feed(bytes.substr(i, step));
        Record r;
        while (reader.next(r) == RecordReader::Result::Record) out.emplace_back(r.type, std::string(r.content));
    }
    return out;
}

}  // namespace

TEST_CASE("record header layout and padding") {
    std::string out;
    append_record(out, kStdout, 0x0102, "abc");
    REQUIRE(out.size() == 16);
    CHECK(out[0] == 1);
    CHECK(out[1] == kStdout);
    CHECK(out[2] == 1);
    CHECK(out[3] == 2);
    CHECK(out[4] == 0);
    CHECK(out[5] == 3);
    CHECK(out[6] == 5);  // padded to 8
}

TEST_CASE("begin request as responder, keep-conn flag") {
    std::string out;
    append_begin_request(out, 1, true);
    REQUIRE(out.size() == 16);
    CHECK(out[1] == kBeginRequest);
    CHECK(out[8] == 0);
    CHECK(out[9] == 1);
    CHECK(out[10] == 1);
}

TEST_CASE("name-value lengths: 127 in one byte, 128 and more in four") {
    std::string out;
    append_pair(out, std::string(127, 'n'), std::string(128, 'v'));
    CHECK(static_cast<unsigned char>(out[0]) == 0x7f);
    CHECK(static_cast<unsigned char>(out[1]) == 0x80);
    CHECK(static_cast<unsigned char>(out[4]) == 128);
    auto pairs = decode_pairs(out);
    REQUIRE(pairs);
    CHECK((*pairs)[0].first.size() == 127);
    CHECK((*pairs)[0].second.size() == 128);
}

TEST_CASE("decode_pairs rejects lengths past the end, including huge ones") {
    CHECK_FALSE(decode_pairs(std::string("\x05\x01" "ab", 4)));
    CHECK_FALSE(decode_pairs(std::string("\xff\xff\xff\xff\x01" "a", 6)));
    CHECK_FALSE(decode_pairs(std::string("\x01", 1)));
    CHECK(decode_pairs("")->empty());
}

TEST_CASE("params: no pair split across records, each record within 65535") {
    Params params;
    for (int i = 0; i < 40; ++i) params.emplace_back("NAME_" + std::to_string(i), std::string(5000, 'a' + i % 26));
    auto bytes = encode_params(1, params);
    REQUIRE(bytes);
    auto records = read_all(*bytes);
    REQUIRE(records.size() >= 4);
    CHECK(records.back().second.empty());  // the empty record ending the stream
    Params decoded;
    for (auto& [type, content] : records) {
        CHECK(type == kParams);
        CHECK(content.size() <= 65535);
        auto pairs = decode_pairs(content);  // decodes alone: no pair crosses a boundary
        REQUIRE(pairs);
        decoded.insert(decoded.end(), pairs->begin(), pairs->end());
    }
    CHECK(decoded == params);
}

TEST_CASE("params: a pair too large for one record is refused") {
    Params params{{"HTTP_X", std::string(70000, 'x')}};
    CHECK_FALSE(encode_params(1, params));
}

TEST_CASE("stdin split into records, empty record separate") {
    std::string body(200000, 'b');
    std::string out;
    append_stdin(out, 3, body);
    append_stdin_end(out, 3);
    auto records = read_all(out, 7);
    std::string joined;
    for (size_t i = 0; i + 1 < records.size(); ++i) {
        CHECK(records[i].first == kStdin);
        CHECK_FALSE(records[i].second.empty());
        joined += records[i].second;
    }
    CHECK(joined == body);
    CHECK(records.back().second.empty());
}

TEST_CASE("reader: header split 3+5, padding 255, bad version") {
    std::string rec;
    rec += std::string("\x01\x06\x00\x01\x00\x02\xff\x00", 8);
    rec += "hi";
    rec += std::string(255, '\0');
    append_record(rec, kEndRequest, 1, std::string(8, '\0'));
    RecordReader reader;
    reader.feed(std::string_view(rec).substr(0, 3));
    Record r;
    CHECK(reader.next(r) == RecordReader::Result::NeedMore);
    reader.feed(std::string_view(rec).substr(3));
    REQUIRE(reader.next(r) == RecordReader::Result::Record);
    CHECK(r.type == kStdout);
    CHECK(r.content == "hi");
    REQUIRE(reader.next(r) == RecordReader::Result::Record);
    CHECK(r.type == kEndRequest);
    auto end = decode_end_request(r.content);
    REQUIRE(end);
    CHECK(end->protocol_status == kRequestComplete);

    RecordReader bad;
    bad.feed(std::string("\x09\x06\x00\x01\x00\x00\x00\x00", 8));
    CHECK(bad.next(r) == RecordReader::Result::Error);
}

TEST_CASE("reader: read in place with prepare/commit, records split across reads of any size") {
    // 64 KiB records, read in pieces that never line up with them, as recv() into the
    // reader's own buffer delivers them: every byte comes out once, in order.
    std::string stream, expected;
    for (int i = 0; i < 9; ++i) {
        std::string content(i % 2 ? 65535 : 1000 + i, static_cast<char>('a' + i));
        append_record(stream, kStdout, 1, content);
        expected += content;
    }
    append_record(stream, kEndRequest, 1, std::string(8, '\0'));
    for (size_t piece : {size_t(1), size_t(7), size_t(4096), size_t(65536), size_t(100000)}) {
        RecordReader reader;
        std::string got;
        int ends = 0;
        for (size_t pos = 0; pos < stream.size();) {
            size_t n = std::min(piece, stream.size() - pos);
            std::memcpy(reader.prepare(n), stream.data() + pos, n);
            reader.commit(n);
            pos += n;
            Record r;
            while (reader.next(r) == RecordReader::Result::Record) {
                if (r.type == kStdout) got += r.content;
                if (r.type == kEndRequest) ++ends;
            }
            // What is left is at most one partial record.
            if (reader.buffered() >= 8 + 65535 + 255) FAIL_CHECK("more than one partial record left: " << reader.buffered());
        }
        CHECK(got == expected);
        CHECK(ends == 1);
        CHECK(reader.buffered() == 0);
    }
}

TEST_CASE("params: byte for byte, one padded record, then the empty record; and no params at all") {
    std::string bytes = *encode_params(7, Params{{"A", "xy"}, {"QUERY_STRING", ""}});
    // Pairs: 1 1 'A' 'x' 'y' (5 bytes) and 12 0 "QUERY_STRING" (14): 19 bytes, padded by 5 to 24.
    std::string expected("\x01\x04\x00\x07\x00\x13\x05\x00", 8);
    expected += std::string("\x01\x02" "Axy" "\x0c\x00" "QUERY_STRING", 19);
    expected += std::string(5, '\0');
    expected += std::string("\x01\x04\x00\x07\x00\x00\x00\x00", 8);
    CHECK(bytes == expected);
    CHECK(*encode_params(7, Params{}) == std::string("\x01\x04\x00\x07\x00\x00\x00\x00", 8));
}
