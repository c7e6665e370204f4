#include <doctest/doctest.h>

#include <variant>

#include "bridge/json_headers.h"
#include "bridge/m2_request.h"

using namespace m2b;

namespace {

Request must_parse(std::string_view msg) {
    auto r = parse_m2_message(msg);
    if (auto* e = std::get_if<ParseError>(&r)) FAIL("parse error: " << e->what);
    return std::get<Request>(r);
}

std::string error_of(std::string_view msg) {
    auto r = parse_m2_message(msg);
    if (auto* e = std::get_if<ParseError>(&r)) return e->what;
    return "";
}

}  // namespace

TEST_CASE("JSON request as Mongrel2 1.12 sends it") {
    std::string json =
        R"({"PATH":"/hello","x-forwarded-for":"127.0.0.1","accept":"*/*","user-agent":"curl/7.88.1","host":"127.0.0.1:16080","METHOD":"GET","VERSION":"HTTP/1.1","URI":"/hello?x=1","QUERY":"x=1","PATTERN":"/","URL_SCHEME":"http","REMOTE_ADDR":"127.0.0.1"})";
    std::string msg = "2f62bd5a-4b61 1 /hello " + std::to_string(json.size()) + ":" + json + ",0:,";
    Request r = must_parse(msg);
    CHECK(r.kind == MessageKind::Http);
    CHECK(r.sender == "2f62bd5a-4b61");
    CHECK(r.conn_id == 1);
    CHECK(r.path == "/hello");
    CHECK(*r.header("QUERY") == "x=1");
    CHECK(*r.header("user-agent") == "curl/7.88.1");
    CHECK(r.body.empty());
}

TEST_CASE("tnetstring request with a body and a repeated header") {
    std::string msg =
        "9b0c8a62 22 /tnet/x 253:11:REMOTE_ADDR,9:127.0.0.1,6:METHOD,4:POST,10:URL_SCHEME,4:http,7:PATTERN,6:/tnet/,"
        "5:QUERY,3:y=2,3:URI,11:/tnet/x?y=2,7:VERSION,8:HTTP/1.1,4:PATH,7:/tnet/x,4:host,9:localhost,14:content-length,"
        "2:11,15:x-forwarded-for,9:127.0.0.1,5:x-dup,12:3:one,3:two,]}11:hi: a, b 1,,";
    Request r = must_parse(msg);
    CHECK(r.conn_id == 22);
    CHECK(*r.header("METHOD") == "POST");
    CHECK(r.body == "hi: a, b 1,");
    bool found = false;
    for (auto& h : r.headers)
        if (h.name == "x-dup") {
            found = true;
            CHECK(h.values == std::vector<std::string>{"one", "two"});
        }
    CHECK(found);
}

TEST_CASE("JSON with a raw TAB and invalid UTF-8 is still read, bytes kept") {
    std::string json = "{\"PATH\":\"/\",\"METHOD\":\"GET\",\"x-tab\":\"a\tb\",\"x-bin\":\"\xff\xfe\",\"x-q\":\"say \\\"hi\\\" \\\\\"}";
    std::string msg = "s 3 / " + std::to_string(json.size()) + ":" + json + ",0:,";
    Request r = must_parse(msg);
    CHECK(*r.header("x-tab") == "a\tb");
    CHECK(*r.header("x-bin") == "\xff\xfe");
    CHECK(*r.header("x-q") == "say \"hi\" \\");
}

TEST_CASE("strict and lenient JSON readers agree on valid JSON") {
    std::string json = R"({"a":"1","b":["x","y\u00e9"],"c":"\n\t\/"})";
    auto strict = parse_json_headers(json);
    auto lenient = parse_json_headers_lenient(json);
    REQUIRE(strict);
    REQUIRE(lenient);
    REQUIRE(strict->size() == lenient->size());
    for (size_t i = 0; i < strict->size(); ++i) {
        CHECK((*strict)[i].name == (*lenient)[i].name);
        CHECK((*strict)[i].values == (*lenient)[i].values);
    }
    CHECK((*lenient)[1].values[1] == "y\xc3\xa9");
}

TEST_CASE("disconnect and credits notices, JSON and tnetstring") {
    Request d = must_parse("s 7 @* 17:{\"METHOD\":\"JSON\"},21:{\"type\":\"disconnect\"},");
    CHECK(d.kind == MessageKind::Disconnect);
    CHECK(d.conn_id == 7);
    Request dt = must_parse("s 8 @* 16:6:METHOD,4:JSON,}21:{\"type\":\"disconnect\"},");
    CHECK(dt.kind == MessageKind::Disconnect);
    Request c = must_parse("s 9 @* 41:{\"METHOD\":\"JSON\",\"DOWNLOAD_CREDITS\":\"69\"},18:{\"type\":\"credits\"},");
    CHECK(c.kind == MessageKind::Credits);
    CHECK(c.credits == 69);
}

TEST_CASE("JSON socket message is a request, not a notice") {
    std::string json = R"({"PATH":"@chat","METHOD":"JSON","PATTERN":"@chat","REMOTE_ADDR":"127.0.0.1"})";
    std::string body = R"({"type":"join","user":"bob"})";
    std::string msg = "s 1 @chat " + std::to_string(json.size()) + ":" + json + "," + std::to_string(body.size()) + ":" + body + ",";
    Request r = must_parse(msg);
    CHECK(r.kind == MessageKind::JsonSocket);
    CHECK(r.body == body);
}

TEST_CASE("websocket and XML messages are classified, not served") {
    CHECK(must_parse("s 1 /ws 32:{\"METHOD\":\"WEBSOCKET_HANDSHAKE\"},0:,").kind == MessageKind::WebSocket);
    CHECK(must_parse("s 1 @x 16:{\"METHOD\":\"XML\"},0:,").kind == MessageKind::Other);
}

TEST_CASE("malformed messages give an error, never a request") {
    CHECK(error_of("") != "");
    CHECK(error_of("garbage") != "");
    CHECK(error_of("s 1 / 2:{},0:,") != "");                    // no METHOD
    CHECK(error_of("s x / 17:{\"METHOD\":\"GET\"},0:,") != "");    // id not a number
    CHECK(error_of("s_1 1 / 16:{\"METHOD\":\"GET\"},0:,") != "");  // bad sender
    CHECK(error_of("s 1 / 16:{\"METHOD\":\"GET\"},5:ab,") != "");   // short body
    CHECK(error_of("s 1 / 16:{\"METHOD\":\"GET\"},0:,x") != "");    // trailing bytes
    CHECK(error_of("s 1 / 16:{\"METHOD\":\"GET\"]0:,") != "");      // bad tag
    CHECK(error_of("s 1 / 5:{\"a\"},0:,") != "");                  // not an object of strings
    CHECK(error_of("s 1 / 12:{\"METHOD\":1},0:,") != "");
    CHECK(error_of("s 1 x 16:{\"METHOD\":\"GET\"},0:,") != "");     // HTTP path must start with '/'
    CHECK(error_of("s 99999999999 / 16:{\"METHOD\":\"GET\"},0:,") != "");
}
