// Several backends behind one handler (adapters/balancer.cpp), against fake
// gateways: who gets a request, when one is moved on, the back-off.
#include <doctest/doctest.h>

#include <chrono>
#include <thread>

#include "adapters/balancer.h"
#include "tests/support/fakes.h"

using namespace m2b;
using namespace m2b::testing;
using namespace std::chrono_literals;

namespace {

struct Events : ExchangeSink {
    std::string out;
    int completed = 0;
    std::vector<std::pair<BackendFailure, std::string>> failures;
    void on_stdout(std::string_view b) override { out += b; }
    void on_stderr(std::string_view) override {}
    void on_complete() override { ++completed; }
    void on_failure(BackendFailure f, std::string_view why) override { failures.emplace_back(f, std::string(why)); }
};

struct Two {
    Loop loop;
    FakeGateway* a;
    FakeGateway* b;
    std::unique_ptr<BalancedGateway> gateway;
    CgiEnv env;
    BodySource body;

    explicit Two(BalancedGateway::Options options = {.per_backend_limit = 8, .first_backoff = 50ms, .max_backoff = 200ms}) {
        auto fa = std::make_unique<FakeGateway>();
        auto fb = std::make_unique<FakeGateway>();
        fa->name = "A";
        fb->name = "B";
        a = fa.get();
        b = fb.get();
        std::vector<std::unique_ptr<Gateway>> all;
        all.push_back(std::move(fa));
        all.push_back(std::move(fb));
        gateway = std::make_unique<BalancedGateway>(loop, std::move(all), options);
    }
    std::unique_ptr<Exchange> start(Events& sink, uint64_t conn = 1) { return gateway->start(env, body, conn, sink); }
    void turn() { loop.run_once(0); }
};

}  // namespace

TEST_CASE("balancer: requests go to the least busy backend, ties taking turns") {
    Two t;
    Events s1, s2, s3, s4;
    auto e1 = t.start(s1, 1), e2 = t.start(s2, 2), e3 = t.start(s3, 3);
    CHECK(t.a->started + t.b->started == 3);
    CHECK(t.gateway->in_flight(0) + t.gateway->in_flight(1) == 3);
    CHECK(std::abs(static_cast<int>(t.gateway->in_flight(0)) - static_cast<int>(t.gateway->in_flight(1))) == 1);
    // The busier one is left alone until the other catches up.
    FakeGateway* busier = t.gateway->in_flight(0) == 2 ? t.a : t.b;
    auto e4 = t.start(s4, 4);
    CHECK(busier->started == 2);
    CHECK(t.gateway->in_flight(0) == 2);
    CHECK(t.gateway->in_flight(1) == 2);
    // An answer frees its place.
    t.a->running(t.a->live.front()->conn)->answer("Status: 200\r\n\r\nok");
    CHECK(t.gateway->in_flight(0) == 1);
}

TEST_CASE("balancer: a refused connect moves the request on and takes the backend out") {
    Two t;
    Events sink;
    auto e = t.start(sink);
    FakeGateway* first = t.a->started ? t.a : t.b;
    FakeGateway* second = first == t.a ? t.b : t.a;
    first->live.front()->sink.on_failure(BackendFailure::Refused, "connect to X: Connection refused");
    CHECK(second->started == 1);
    CHECK(sink.failures.empty());
    CHECK(t.gateway->taken_out(first == t.a ? 0 : 1));
    CHECK(t.gateway->in_flight(first == t.a ? 0 : 1) == 0);
    second->live.front()->answer("Status: 200\r\n\r\nfine");
    CHECK(sink.completed == 1);
    CHECK(sink.out == "Status: 200\r\n\r\nfine");
    e.reset();  // the refused attempt goes with the request
    CHECK(first->live.empty());
    // While it is out, requests go to the other one.
    Events s2;
    auto e2 = t.start(s2, 2);
    CHECK(second->started == 2);
}

TEST_CASE("balancer: a connect that timed out moves the request on too, and is a 504 when none is left") {
    Two t;
    Events sink;
    auto e = t.start(sink);
    FakeGateway* first = t.a->started ? t.a : t.b;
    FakeGateway* second = first == t.a ? t.b : t.a;
    first->live.front()->sink.on_failure(BackendFailure::ConnectTimeout, "connect to 1 timed out after 50 ms");
    CHECK(second->started == 1);
    CHECK(t.gateway->taken_out(first == t.a ? 0 : 1));
    second->live.front()->sink.on_failure(BackendFailure::ConnectTimeout, "connect to 2 timed out after 50 ms");
    REQUIRE(sink.failures.size() == 1);
    CHECK(sink.failures[0].first == BackendFailure::ConnectTimeout);
}

TEST_CASE("balancer: a request that reached a backend is never sent to another") {
    Two t;
    Events sink;
    auto e = t.start(sink);
    FakeGateway* first = t.a->started ? t.a : t.b;
    first->live.front()->sink.on_failure(BackendFailure::Unavailable, "backend connection closed before the response");
    CHECK(t.a->started + t.b->started == 1);
    REQUIRE(sink.failures.size() == 1);
    CHECK(sink.failures[0].first == BackendFailure::Unavailable);
    CHECK(sink.failures[0].second == std::string(first->name) + ": backend connection closed before the response");
    // A close before the answer may be the request's own doing (too large a header for the
    // backend): one client must not be able to take backends out.
    CHECK_FALSE(t.gateway->taken_out(first == t.a ? 0 : 1));
}

TEST_CASE("balancer: a request turned away unrun (overloaded) moves on; the backend stays in") {
    Two t;
    Events sink;
    auto e = t.start(sink);
    FakeGateway* first = t.a->started ? t.a : t.b;
    FakeGateway* second = first == t.a ? t.b : t.a;
    first->live.front()->sink.on_failure(BackendFailure::Overloaded, "backend answered FCGI_OVERLOADED");
    CHECK(second->started == 1);
    CHECK(sink.failures.empty());
    CHECK_FALSE(t.gateway->taken_out(first == t.a ? 0 : 1));
    second->live.front()->sink.on_failure(BackendFailure::Overloaded, "connect: Resource temporarily unavailable");
    REQUIRE(sink.failures.size() == 1);
    CHECK(sink.failures[0].first == BackendFailure::Overloaded);  // 503 when every one is full
}

TEST_CASE("balancer: when every backend refuses, the last failure is reported") {
    Two t;
    Events sink;
    auto e = t.start(sink);
    // Whichever got it first refuses, then the other.
    FakeGateway* first = t.a->started ? t.a : t.b;
    FakeGateway* second = first == t.a ? t.b : t.a;
    first->live.front()->sink.on_failure(BackendFailure::Refused, "connect to 1: refused");
    second->live.front()->sink.on_failure(BackendFailure::Refused, "connect to 2: refused");
    REQUIRE(sink.failures.size() == 1);
    CHECK(sink.failures[0].first == BackendFailure::Refused);
    CHECK(sink.failures[0].second == std::string(second->name) + ": connect to 2: refused");
}

TEST_CASE("balancer: the back-off doubles while probes fail and ends with an answer") {
    Two t;
    auto refuse_on = [&](FakeGateway* g) {
        Events sink;
        auto e = t.start(sink);
        FakeGateway* got = !t.a->live.empty() ? t.a : t.b;
        if (got != g) {  // the other one took it: finish it and try again
            got->live.front()->answer("Status: 200\r\n\r\n");
            return false;
        }
        g->live.front()->sink.on_failure(BackendFailure::Refused, "refused");
        t.b->live.empty() ? void() : t.b->live.front()->answer("Status: 200\r\n\r\n");
        t.a->live.empty() ? void() : t.a->live.front()->answer("Status: 200\r\n\r\n");
        t.turn();
        return true;
    };
    while (!refuse_on(t.a)) t.turn();
    CHECK(t.gateway->backend(0).backoff == 50ms);
    // Out: a failure of another request now does not double it.
    t.gateway->failed(0, "again");
    CHECK(t.gateway->backend(0).backoff == 50ms);
    std::this_thread::sleep_for(60ms);
    CHECK_FALSE(t.gateway->taken_out(0));
    while (!refuse_on(t.a)) t.turn();  // the probe fails
    CHECK(t.gateway->backend(0).backoff == 100ms);
    t.gateway->answered(0);
    CHECK(t.gateway->backend(0).backoff == 0ms);
    CHECK_FALSE(t.gateway->taken_out(0));
}

TEST_CASE("balancer: beyond every backend's limit the answer is 503, on the next turn") {
    Two t({.per_backend_limit = 1, .first_backoff = 50ms, .max_backoff = 200ms});
    Events s1, s2, s3;
    auto e1 = t.start(s1, 1), e2 = t.start(s2, 2), e3 = t.start(s3, 3);
    CHECK(t.a->started == 1);
    CHECK(t.b->started == 1);
    CHECK(s3.failures.empty());  // never from inside start()
    t.turn();
    REQUIRE(s3.failures.size() == 1);
    CHECK(s3.failures[0].first == BackendFailure::Overloaded);
    // A cancelled request gives its place back at once.
    e1->cancel();
    Events s4;
    auto e4 = t.start(s4, 4);
    t.turn();
    CHECK(s4.failures.empty());
}

namespace {

// A backend that refuses from inside start(), before the caller holds the handle.
struct RefusesAtOnce : FakeGateway {
    std::unique_ptr<Exchange> start(const CgiEnv& env, const BodySource& body, uint64_t conn, ExchangeSink& sink) override {
        auto e = FakeGateway::start(env, body, conn, sink);
        sink.on_failure(BackendFailure::Refused, "refused at once");
        return e;
    }
};

}  // namespace

TEST_CASE("balancer: a refusal reported from inside start() moves on once start() has returned") {
    Loop loop;
    auto refusing = std::make_unique<RefusesAtOnce>();
    auto fine = std::make_unique<FakeGateway>();
    RefusesAtOnce* r = refusing.get();
    FakeGateway* f = fine.get();
    std::vector<std::unique_ptr<Gateway>> all;
    all.push_back(std::move(refusing));
    all.push_back(std::move(fine));
    BalancedGateway gateway(loop, std::move(all), {.per_backend_limit = 8, .first_backoff = 50ms, .max_backoff = 200ms});
    CgiEnv env;
    BodySource body;
    Events sink;
    std::unique_ptr<Exchange> e;
    // Until the refusing one is picked first.
    for (int i = 0; i < 2 && f->started == 0; ++i) {
        e = gateway.start(env, body, 1, sink);
        if (r->started == 0) {
            e.reset();
            continue;
        }
        CHECK(f->started == 0);  // not from inside the refusing start()
        loop.run_once(0);
        CHECK(f->started == 1);
        f->live.front()->answer("Status: 200\r\n\r\nok");
        CHECK(sink.completed == 1);
    }
    CHECK(r->started == 1);
    CHECK(sink.failures.empty());
}

TEST_CASE("balancer: with every backend out, the first to come back is tried anyway") {
    Two t;
    t.gateway->failed(0, "x");
    std::this_thread::sleep_for(5ms);
    t.gateway->failed(1, "y");
    Events sink;
    auto e = t.start(sink);
    CHECK(t.a->started == 1);  // its back-off ends first
    CHECK(t.b->started == 0);
}
