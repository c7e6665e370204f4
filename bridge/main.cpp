// The process: command line or config file, privileges, the service, signals
// and systemd's notify protocol.
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <grp.h>
#include <malloc.h>
#include <pwd.h>
#include <unistd.h>

#ifdef M2B_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "bridge/config.h"
#include "base/log.h"
#include "base/loop.h"
#include "bridge/service.h"
#include "base/version.h"

namespace {

using namespace m2b;

void notify(const char* state) {
#ifdef M2B_HAVE_SYSTEMD
    sd_notify(0, state);
#else
    (void)state;
#endif
}

// systemd's WatchdogSec: a ping at half the interval, from the loop, so a
// stuck loop stops the pings and systemd restarts the service.
void start_watchdog(Loop& loop) {
#ifdef M2B_HAVE_SYSTEMD
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0) return;
    auto interval = std::chrono::milliseconds(std::max<uint64_t>(1, usec / 2000));
    struct Pinger {
        static void ping(Loop& loop, std::chrono::milliseconds interval) {
            notify("WATCHDOG=1");
            loop.after(interval, [&loop, interval] { ping(loop, interval); });
        }
    };
    Pinger::ping(loop, interval);
#else
    (void)loop;
#endif
}

// Before any request is read: the process becomes `user` with its groups.
void drop_privileges(const std::string& user) {
    if (user.empty()) return;
    errno = 0;
    const passwd* pw = getpwnam(user.c_str());
    if (!pw) throw ConfigError("user: no such user: " + user);
    if (geteuid() != 0) {
        if (geteuid() == pw->pw_uid) return;
        throw ConfigError("user: only root can switch to " + user + " (m2bridge runs as uid " +
                          std::to_string(geteuid()) + ")");
    }
    if (initgroups(pw->pw_name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0)
        throw ConfigError("user: cannot switch to " + user + ": " + strerror(errno));
    if (pw->pw_uid != 0 && setuid(0) == 0) throw ConfigError("user: switched to " + user + " but root came back");
    log::info("running as ", user, " (uid ", pw->pw_uid, ")");
}

// CGI scripts are whatever sits in a directory: never run them as root by accident.
void refuse_root_cgi(const ServiceConfig& config) {
    if (geteuid() != 0) return;
    for (const HandlerConfig& h : config.handlers)
        if (h.mode == Mode::Cgi && !h.allow_root)
            throw ConfigError((config.config_file.empty() ? std::string() : "handler " + h.name + ": ") +
                              "refusing to run CGI scripts as root: give " +
                              (config.config_file.empty() ? "--user NAME to drop privileges, or --allow-root"
                                                          : "user = \"NAME\" (top level) to drop privileges, or allow_root = true") +
                              " to run them as root");
}

void reload(Service& service, const std::string& running_user, bool keep_log_level) {
    const std::string& file = service.config().config_file;
    notify("RELOADING=1");
    if (!file.empty()) {
        try {
            ServiceConfig next = load_config_file(file);
            if (next.user != running_user)
                log::warn("reload: user changed to '", next.user, "'; that takes a restart, staying '", running_user, "'");
            next.user = running_user;
            if (keep_log_level) next.log_level = service.config().log_level;  // the command line's wins
            refuse_root_cgi(next);
            service.reload(next);
            log::Level level;
            if (log::parse_level(next.log_level, level)) log::set_level(level);
            log::info("reloaded ", file, ": ", next.handlers.size(), " handler(s)");
        } catch (const std::exception& e) {
            log::error("reload refused, the running config stays: ", log::one_line(e.what()));
        }
    }
    service.reopen_logs();
    notify("READY=1");
}

}  // namespace

int main(int argc, char** argv) {
    CommandLine command = parse_command_line(argc, argv);
    ServiceConfig& config = command.config;
    if (command.action == Action::Check) {
        std::fputs(to_toml(config).c_str(), stdout);
        return 0;
    }
    log::Level level;
    log::parse_level(config.log_level, level);
    log::set_level(level);
    std::signal(SIGPIPE, SIG_IGN);
    // Replies are built in blocks of up to 1 MiB (a collected reply: up to
    // --buffer-size), freed once written to Mongrel2 (bridge/out_frame.h).
    // glibc would map each such block afresh (and fault its pages in) until
    // it saw a large one freed; keep them on the heap, and keep a few MiB of
    // it, instead.
    mallopt(M_MMAP_THRESHOLD, 8 * 1024 * 1024);
    mallopt(M_TRIM_THRESHOLD, 16 * 1024 * 1024);

    try {
        drop_privileges(config.user);
        refuse_root_cgi(config);
        Loop loop;
        Service service(loop);
        bool stopping = false;
        auto stop = [&] {
            if (stopping) {
                loop.stop();  // a second signal: leave now
                return;
            }
            stopping = true;
            notify("STOPPING=1");
            log::info("stopping: finishing ", service.in_flight(), " request(s) in flight");
            service.stop([&] { loop.stop(); });
            loop.after(HandlerConfig::ms(service.config().grace_seconds), [&] {
                log::warn("grace time over; exiting with requests still in flight");
                loop.stop();
            });
        };
        loop.on_signal(SIGTERM, stop);
        loop.on_signal(SIGINT, stop);
        loop.on_signal(SIGHUP, [&] {
            if (!stopping) reload(service, config.user, command.log_level_given);
        });
        // The signals above are blocked from here on and wait in the signalfd
        // while the handlers start: a SIGHUP during start-up does not kill.
        service.start(config);
        start_watchdog(loop);

        log::info("m2bridge ", kVersion, " ready: ", config.handlers.size(), " handler(s)",
                  config.config_file.empty() ? "" : " from " + config.config_file);
        notify("READY=1");
        loop.run();
        loop.run_posted();  // before the handlers and gateways they refer to are destroyed
    } catch (const ConfigError& e) {
        std::fprintf(stderr, "m2bridge: %s\n", log::one_line(e.what()).c_str());
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "m2bridge: %s\n", log::one_line(e.what()).c_str());
        return 2;
    }
    return 0;
}
