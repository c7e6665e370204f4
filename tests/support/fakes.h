// Stand-ins for the two sides of the handler in unit tests and fuzz targets:
// a recorder in place of the ZeroMQ sockets and a gateway whose exchanges the
// test answers by hand. Only for what no real peer can do inside one process.
#pragma once

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "adapters/gateway.h"
#include "bridge/m2_link.h"

namespace m2b::testing {

struct Recorder : Mongrel2Link {
    struct Reply {
        std::vector<uint64_t> ids;
        std::string body;
    };
    std::vector<Reply> replies;
    bool receiving = true;
    // What a ZeroMQ queue that Mongrel2 does not empty would report; a test
    // sets `queued` and calls `waiter` to play it draining.
    size_t queued = 0;
    int frames_handed_over = 0;  // messages given as OutFrames
    size_t waiter_mark = 0;
    std::function<void()> waiter;

    using Mongrel2Link::send;
    void send(std::string_view message) override {
        // SENDER SP LEN ":" IDS "," SP BODY
        size_t sp = message.find(' ');
        size_t colon = message.find(':', sp);
        size_t len = std::stoul(std::string(message.substr(sp + 1, colon - sp - 1)));
        std::string ids(message.substr(colon + 1, len));
        Reply r;
        r.body = std::string(message.substr(colon + 1 + len + 2));
        if (!ids.empty() && ids[0] == 'X') {
            r.body = "X:" + r.body;
            ids = ids.substr(1);
        }
        size_t pos = ids.find_first_not_of(' ');
        while (pos != std::string::npos) {
            size_t next = ids.find(' ', pos);
            r.ids.push_back(std::stoull(ids.substr(pos, next - pos)));
            pos = ids.find_first_not_of(' ', next);
        }
        replies.push_back(std::move(r));
    }
    void send(std::string_view envelope, OutFrame frame) override {
        ++frames_handed_over;
        send(envelope, frame.view());
    }
    void stop_receiving() override { receiving = false; }
    size_t queued_bytes() const override { return queued; }
    void when_queued_below(size_t below, std::function<void()> ready) override {
        waiter_mark = below;
        waiter = std::move(ready);
    }

    // HTTP replies (not ctl messages) that reached `id`, in order.
    std::vector<std::string> to(uint64_t id) const {
        std::vector<std::string> out;
        for (const auto& r : replies)
            if (!r.body.starts_with("X:") && std::find(r.ids.begin(), r.ids.end(), id) != r.ids.end())
                out.push_back(r.body);
        return out;
    }
};

struct FakeGateway : Gateway {
    struct Live : Exchange {
        FakeGateway& gateway;
        ExchangeSink& sink;
        uint64_t conn;
        bool paused = false;
        bool cancelled = false;
        Live(FakeGateway& g, ExchangeSink& s, uint64_t c) : gateway(g), sink(s), conn(c) {}
        ~Live() override { std::erase(gateway.live, this); }
        void set_paused(bool p) override { paused = p; }
        void cancel() override { cancelled = true; }
        void answer(std::string_view head_and_body) {
            sink.on_stdout(head_and_body);
            sink.on_complete();
        }
    };
    std::vector<Live*> live;
    int started = 0;
    std::string name = "fake";

    // The exchange working for connection `conn`, if any.
    Live* running(uint64_t conn) {
        for (auto* e : live)
            if (e->conn == conn && !e->cancelled) return e;
        return nullptr;
    }

    std::unique_ptr<Exchange> start(const CgiEnv&, const BodySource&, uint64_t conn, ExchangeSink& sink) override {
        auto e = std::make_unique<Live>(*this, sink, conn);
        live.push_back(e.get());
        ++started;
        return e;
    }
    std::string_view describe() const override { return name; }
};

}  // namespace m2b::testing
