// The handler's message path: requests, pipelining, disconnects, credits,
// deliveries (and their waits on ZeroMQ's queue), restarts and backend answers
// in any order, against a fake gateway. Each input byte picks the next event;
// the loop turns between them.
// Any crash, leak, sanitizer report or broken invariant is a finding.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "bridge/handler.h"
#include "base/log.h"
#include "tests/support/fakes.h"

using namespace m2b;
using namespace m2b::testing;

namespace {

std::string docroot;

struct Input {
    const uint8_t* data;
    size_t size;
    size_t pos = 0;
    bool more() const { return pos < size; }
    uint8_t byte() { return pos < size ? data[pos++] : 0; }
};

std::string request(uint64_t conn, std::string_view path, std::string_view method, std::string_view extra) {
    std::string headers = "{\"PATH\":\"" + std::string(path) + "\",\"METHOD\":\"" + std::string(method) +
                          "\",\"VERSION\":\"HTTP/1.1\",\"URI\":\"" + std::string(path) +
                          "\",\"PATTERN\":\"/\",\"host\":\"localhost\"" + std::string(extra) + "}";
    return "front " + std::to_string(conn) + " " + std::string(path) + " " + std::to_string(headers.size()) + ":" +
           headers + ",0:,";
}

std::string app_output(Input& in) {
    switch (in.byte() % 7) {
        case 5: return "X-Sendfile: " + docroot + (in.byte() % 2 ? "/app.php" : "/../etc") + "\r\nContent-Type: text/plain\r\n\r\n";
        case 0: return "Content-Type: text/plain\r\n\r\n" + std::string(in.byte() * 257, 'b');
        case 1: return "Content-Type: text/plain\r\nContent-Length: " + std::to_string(in.byte()) + "\r\n\r\nabc";
        case 2: return "X-Mongrel2-Deliver:\r\n\r\n";
        case 3: {
            std::string ids;
            for (int i = in.byte() % 6; i > 0; --i) ids += std::to_string(in.byte() % 8) + " ";
            return "X-Mongrel2-Deliver: " + ids + "\r\nContent-Type: text/plain\r\n\r\nnews";
        }
        case 4: return "Location: /app.php\r\n\r\n";
        default: return std::string(reinterpret_cast<const char*>(in.data + in.pos), std::min<size_t>(in.size - in.pos, 64));
    }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    log::set_level(log::Level::Error);
    char tmpl[] = "/tmp/m2b-fuzz-handler-XXXXXX";
    docroot = mkdtemp(tmpl);
    std::ofstream(docroot + "/app.php") << "<?php";
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    Input in{data, size};
    HandlerConfig config;
    config.document_root = docroot;
    config.max_requests = 1 + in.byte() % 4;
    config.queue = in.byte() % 4;
    config.max_pipelined = in.byte() % 6;
    config.buffer_size = 16 * 1024;
    config.sendfile_roots = {docroot};
    config.pacing_burst = 1 + in.byte() % 4;
    {
        Loop loop;
        FakeGateway gateway;
        Recorder link;
        auto handler = std::make_unique<Handler>(loop, config, gateway, link);
        while (in.more()) {
            uint64_t conn = in.byte() % 8;
            switch (in.byte() % 12) {
                case 0: handler->on_message(request(conn, "/app.php", "GET", "")); break;
                case 1: handler->on_message(request(conn, "/missing", "GET", "")); break;
                case 2: handler->on_message(request(conn, "/app.php", "HEAD", "")); break;
                case 3: handler->on_message(request(conn, "/app.php", "GET", ",\"DOWNLOAD_CREDITS\":\"4096\"")); break;
                case 4:
                    handler->on_message("front " + std::to_string(conn) +
                                        " @* 17:{\"METHOD\":\"JSON\"},21:{\"type\":\"disconnect\"},");
                    break;
                case 5: {
                    std::string n = std::to_string(in.byte() * 64);
                    std::string h = "{\"METHOD\":\"JSON\",\"DOWNLOAD_CREDITS\":\"" + n + "\"}";
                    handler->on_message("front " + std::to_string(conn) + " @* " + std::to_string(h.size()) + ":" + h +
                                        ",18:{\"type\":\"credits\"},");
                    break;
                }
                case 6:
                    if (auto* e = gateway.running(conn)) e->sink.on_stdout(app_output(in));
                    break;
                case 7:
                    if (auto* e = gateway.running(conn)) {
                        if (in.byte() % 2)
                            e->sink.on_complete();
                        else
                            e->sink.on_failure(BackendFailure::Unavailable, "fuzz");
                    }
                    break;
                case 8:
                    if (in.byte() % 8 == 0) handler->on_server_lost("fuzz");
                    break;
                case 9:  // ZeroMQ holding much or nothing for Mongrel2
                    link.queued = in.byte() % 2 ? 9 * 1024 * 1024 : 0;
                    break;
                case 10:  // ... and telling a waiting fan-out it may go on
                    if (link.waiter) {
                        auto wake = std::move(link.waiter);
                        wake();
                    }
                    break;
                default:
                    for (int i = in.byte() % 4; i >= 0; --i) loop.run_once(0);
                    break;
            }
        }
        for (int i = 0; i < 4; ++i) loop.run_once(0);
        // Nothing may outlive its connection: after a restart nothing is held.
        handler->on_server_lost("end of input");
        if (handler->connections() != 0 || handler->in_flight() != 0) std::abort();
        handler.reset();
        loop.run_posted();
    }
    return 0;
}
