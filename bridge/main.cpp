// Wires the pieces together: command line, loop, backend gateway, Mongrel2 handler.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <exception>

#ifdef M2B_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "adapters/cgi/runner.h"
#include "adapters/fastcgi/client.h"
#include "bridge/config.h"
#include "bridge/handler.h"
#include "bridge/log.h"
#include "bridge/loop.h"
#include "bridge/m2_sockets.h"
#include "bridge/version.h"

namespace {

void notify(const char* state) {
#ifdef M2B_HAVE_SYSTEMD
    sd_notify(0, state);
#else
    (void)state;
#endif
}

constexpr auto kShutdownGrace = std::chrono::seconds(10);

}  // namespace

int main(int argc, char** argv) {
    using namespace m2b;
    HandlerConfig config = parse_command_line(argc, argv);
    log::Level level;
    log::parse_level(config.log_level, level);
    log::set_level(level);
    std::signal(SIGPIPE, SIG_IGN);

    try {
        Loop loop;
        std::unique_ptr<Gateway> gateway;
        if (config.mode == Mode::Cgi) {
            CgiOptions options;
            options.timeout = config.timeout();
            for (const auto& name : config.pass_env)
                if (const char* value = std::getenv(name.c_str())) options.passed_env.push_back(name + "=" + value);
            gateway = std::make_unique<CgiGateway>(loop, std::move(options));
        } else {
            FastcgiOptions options;
            options.address = config.backend;
            options.timeout = config.timeout();
            options.keep_conn = config.keep_conn;
            options.max_idle = std::max<size_t>(1, std::min<size_t>(config.max_requests, 16));
            gateway = std::make_unique<FastcgiGateway>(loop, options);
        }
        Mongrel2Sockets sockets(loop, config.send_spec, config.recv_spec);
        Handler handler(loop, config, *gateway, sockets);
        sockets.set_receiver([&](std::string_view m) { handler.on_message(m); },
                             [&](std::string_view why) { handler.on_server_lost(why); });

        bool stopping = false;
        auto stop = [&] {
            if (stopping) {
                loop.stop();  // a second signal: leave now
                return;
            }
            stopping = true;
            notify("STOPPING=1");
            log::info("stopping: finishing ", handler.in_flight(), " request(s) in flight");
            handler.shutdown([&] { loop.stop(); });
            loop.after(std::chrono::duration_cast<std::chrono::milliseconds>(kShutdownGrace), [&] {
                log::warn("grace time over; exiting with requests still in flight");
                loop.stop();
            });
        };
        loop.on_signal(SIGTERM, stop);
        loop.on_signal(SIGINT, stop);
        loop.on_signal(SIGHUP, [&] {
            notify("RELOADING=1");
            handler.reopen_logs();
            notify("READY=1");
        });

        log::info("m2bridge ", kVersion, config.mode == Mode::Cgi ? " cgi " : " fastcgi ", config.backend, " <- ", config.send_spec, " -> ",
                  config.recv_spec);
        notify("READY=1");
        loop.run();
        loop.run_posted();  // before the handler and gateway they refer to are destroyed
    } catch (const std::exception& e) {
        std::fprintf(stderr, "m2bridge: %s\n", e.what());
        return 2;
    }
    return 0;
}
