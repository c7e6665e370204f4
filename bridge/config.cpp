#include "bridge/config.h"

#include <CLI/CLI.hpp>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <pwd.h>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <tuple>
#include <sys/stat.h>
#include <toml++/toml.h>
#include <unistd.h>

#include "adapters/backend_address.h"
#include "bridge/modes.h"
#include "bridge/zmtp.h"
#include "bridge/config_options.h"
#include "base/log.h"
#include "base/version.h"

namespace m2b {

namespace {

[[noreturn]] void usage_error(const std::string& what) {
    std::fprintf(stderr, "m2bridge: %s\n", log::one_line(what).c_str());
    std::exit(2);
}

// How a mistake names the option: "--timeout" on the command line, "timeout" in a file.
struct Namer {
    bool file_keys;
    std::string operator()(const char* key) const { return file_keys ? key : option_for_key(key); }
};

std::string canonical_dir(const std::string& path, const std::string& option) {
    char real[PATH_MAX];
    struct stat st {};
    if (!realpath(path.c_str(), real) || stat(real, &st) != 0 || !S_ISDIR(st.st_mode))
        throw ConfigError(option + ": not a directory: " + path);
    return real;
}

size_t default_max_procs() { return 2 * static_cast<size_t>(std::max(1L, sysconf(_SC_NPROCESSORS_ONLN))); }

// Names the option and the value while checking; the sockets, made later,
// report what slips through (a host that does not resolve), naming the endpoint.
void check_endpoint(const std::string& endpoint, const std::string& option) {
    if (endpoint.empty()) throw ConfigError(option + ": must not be empty");
    zmtp::Endpoint parsed;
    std::string why;
    if (!zmtp::parse_endpoint(endpoint, parsed, why)) throw ConfigError(option + ": " + endpoint + ": " + why);
}

// The program a spawn runs, as execve needs it.
std::string find_program(const std::string& name) {
    auto runnable = [](const std::string& p) {
        struct stat st {};
        return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(p.c_str(), X_OK) == 0;
    };
    if (name.find('/') != std::string::npos) return runnable(name) ? name : "";
    const char* path = std::getenv("PATH");
    std::stringstream dirs(path ? path : "/usr/local/bin:/usr/bin:/bin");
    for (std::string dir; std::getline(dirs, dir, ':');)
        if (!dir.empty() && runnable(dir + "/" + name)) return dir + "/" + name;
    return "";
}

// Walks backend, then other_backends: for (p = &h.backend; p; p = next_backend(h, p)).
const std::string* next_backend(const HandlerConfig& h, const std::string* current) {
    if (current == &h.backend) return h.other_backends.empty() ? nullptr : &h.other_backends.front();
    size_t i = static_cast<size_t>(current - h.other_backends.data()) + 1;
    return i < h.other_backends.size() ? &h.other_backends[i] : nullptr;
}

void add_handler_options(CLI::App* app, HandlerConfig& c, Mode mode) {
    app->option_defaults()->always_capture_default();
    for (const OptionSpec& spec : handler_options()) {
        if (!spec.applies_to(mode)) continue;
        std::visit(
            [&](auto member) {
                using T = std::remove_reference_t<decltype(c.*member)>;
                if constexpr (std::is_same_v<T, bool>) {
                    app->add_flag(spec.option(), c.*member, spec.help);
                } else if constexpr (std::is_same_v<T, std::optional<bool>>) {
                    // --keep-conn / --no-keep-conn; neither leaves the default to finish_handler.
                    std::string name = spec.option();
                    app->add_flag_callback(name, [&c, member] { c.*member = true; }, spec.help);
                    app->add_flag_callback("--no-" + name.substr(2), [&c, member] { c.*member = false; });
                } else if constexpr (std::is_same_v<T, double> || std::is_same_v<T, size_t>) {
                    app->add_option(spec.option(), c.*member, spec.help)
                        ->check(CLI::Validator(
                            [&spec](std::string& v) {
                                char* end = nullptr;
                                double d = std::strtod(v.c_str(), &end);
                                if (end == v.c_str() || *end) return v + ": not a number";
                                std::string range = spec.check(d);
                                return range.empty() ? range : v + ": must be " + range;
                            },
                            ""));
                } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
                    // Repeatable, one value each: "--pass-env A --pass-env B PATH" leaves PATH alone.
                    app->add_option(spec.option(), c.*member, spec.help)->allow_extra_args(false);
                } else {
                    app->add_option(spec.option(), c.*member, spec.help);
                }
            },
            spec.field);
    }
}

void add_process_options(CLI::App* app, ServiceConfig& s) {
    app->add_option("--user", s.user, "drop to this user and its groups before reading any request");
    app->add_option("--metrics", s.metrics, "serve Prometheus text metrics on HOST:PORT (or PORT on 127.0.0.1)");
    app->add_option("--log-level", s.log_level, "error, warn, info or debug")
        ->check(CLI::IsMember({"error", "warn", "info", "debug"}));
    app->add_option("--grace", s.grace_seconds, "seconds requests in flight get to finish after SIGTERM")
        ->check(CLI::Validator(
            [](std::string& v) {
                char* end = nullptr;
                double d = std::strtod(v.c_str(), &end);
                // Written so that NaN fails too.
                return end != v.c_str() && !*end && d >= 0 && d <= 3600 ? std::string()
                                                                        : v + ": must be between 0 and 3600";
            },
            "0-3600"));
}

}  // namespace

void finish_handler(HandlerConfig& h, bool file_keys) {
    Namer name{file_keys};
    if (!h.document_root.empty()) h.document_root = canonical_dir(h.document_root, name("document_root"));
    for (auto& root : h.sendfile_roots) {
        root = canonical_dir(root, name("sendfile_root"));
        if (root == "/") throw ConfigError(name("sendfile_root") + ": / would let an app send any file of the machine");
    }
    if (h.index.find('/') != std::string::npos || h.index == "." || h.index == "..")
        throw ConfigError(name("index") + ": must be a file name, not a path: " + h.index);
    if (!h.disconnect_path.empty() && h.disconnect_path[0] != '/')
        throw ConfigError(name("disconnect_path") + ": must be a path starting with /: " + h.disconnect_path);
    if (h.mode == Mode::Cgi) {
        const std::string what = file_keys ? "cgi" : "PATH";
        h.max_requests = h.max_procs ? h.max_procs : default_max_procs();
        char real[PATH_MAX];
        struct stat st {};
        if (!realpath(h.backend.c_str(), real) || stat(real, &st) != 0)
            throw ConfigError(what + ": no such file or directory: " + h.backend);
        h.backend = real;
        h.cgi_directory = S_ISDIR(st.st_mode);
        if (!h.cgi_directory && (!S_ISREG(st.st_mode) || access(real, X_OK) != 0))
            throw ConfigError(what + ": not an executable file: " + h.backend);
        for (const auto& var : h.pass_env)
            if (var.empty() || var.find('=') != std::string::npos)
                throw ConfigError(name("pass_env") + ": not a variable name: " + var);
    } else if (h.spawns()) {
        const std::string what = file_keys ? "spawn.command" : "--spawn";
        if (h.spawn_command.empty()) throw ConfigError(what + ": no program given (… --spawn N -- CMD [ARG...])");
        std::string program = find_program(h.spawn_command[0]);
        if (program.empty()) throw ConfigError(what + ": not an executable program: " + h.spawn_command[0]);
        h.spawn_command[0] = program;
    } else {
        std::set<std::string> seen;
        for (const std::string* address = &h.backend; address; address = next_backend(h, address)) {
            sockaddr_storage addr;
            socklen_t len;
            std::string error = parse_backend_address(*address, addr, len);
            const std::string what = file_keys ? mode_info(h.mode).name : "ADDRESS";
            if (!error.empty()) throw ConfigError(what + ": " + *address + ": " + error);
            if (!seen.insert(*address).second) throw ConfigError(what + ": " + *address + " is given twice");
        }
    }
    if (h.mode == Mode::Cgi || h.spawns()) h.other_backends.clear();
    if (!h.upload_store.empty()) {
        auto slash = h.upload_store.rfind('/');
        if (h.upload_store.size() < 6 || h.upload_store.compare(h.upload_store.size() - 6, 6, "XXXXXX") != 0 ||
            slash == std::string::npos)
            throw ConfigError(name("upload_store") +
                              ": must be a path ending in XXXXXX, like Mongrel2's upload.temp_store: " + h.upload_store);
        std::string dir = canonical_dir(slash == 0 ? "/" : h.upload_store.substr(0, slash), name("upload_store"));
        h.upload_store = (dir == "/" ? "" : dir) + h.upload_store.substr(slash);
        struct stat st {};
        stat(dir.c_str(), &st);
        h.upload_owner = st.st_uid;  // Mongrel2 writes its uploads into a directory it owns
    }
    if (h.mode == Mode::FastCgi && !h.keep_conn) {
        bool all_unix = true;
        for (const std::string* address = &h.backend; address; address = next_backend(h, address))
            all_unix = all_unix && address->rfind("unix:", 0) == 0;
        h.keep_conn = h.spawns() || all_unix;
    }
    check_endpoint(h.send_spec, name("send_spec"));
    check_endpoint(h.recv_spec, name("recv_spec"));
}

namespace {

// A handler with other_servers becomes one handler per server: "php", "php-2", ...
void one_handler_per_server(ServiceConfig& c) {
    std::vector<HandlerConfig> all;
    for (HandlerConfig& h : c.handlers) {
        auto others = std::move(h.other_servers);
        h.other_servers.clear();
        all.push_back(h);
        for (size_t i = 0; i < others.size(); ++i) {
            HandlerConfig copy = h;
            if (!h.name.empty()) copy.name = h.name + "-" + std::to_string(i + 2);
            copy.send_spec = others[i].first;
            copy.recv_spec = others[i].second;
            check_endpoint(copy.send_spec, "send_spec");
            check_endpoint(copy.recv_spec, "recv_spec");
            all.push_back(std::move(copy));
        }
    }
    c.handlers = std::move(all);
}

}  // namespace

void finish_service(ServiceConfig& c) {
    one_handler_per_server(c);
    log::Level level;
    if (!log::parse_level(c.log_level, level))
        throw ConfigError("log_level: must be error, warn, info or debug: " + c.log_level);
    if (!c.user.empty() && !getpwnam(c.user.c_str())) throw ConfigError("user: no such user: " + c.user);
    if (!c.metrics.empty()) {
        std::string address = c.metrics.find(':') == std::string::npos ? "127.0.0.1:" + c.metrics : c.metrics;
        sockaddr_storage addr;
        socklen_t len;
        std::string error = parse_backend_address(address, addr, len);
        if (!error.empty() || address.rfind("unix:", 0) == 0)
            throw ConfigError("metrics: not HOST:PORT: " + c.metrics + (error.empty() ? "" : ": " + error));
    }
    std::set<std::string> names, sends, recvs;
    for (size_t i = 0; i < c.handlers.size(); ++i) {
        HandlerConfig& h = c.handlers[i];
        if (h.name.empty()) h.name = "handler-" + std::to_string(i + 1);
        if (!names.insert(h.name).second) throw ConfigError("name: two handlers are called " + h.name);
        // Two PULL sockets on one Handler would split its requests between them.
        if (!sends.insert(h.send_spec).second)
            throw ConfigError("send_spec: two handlers connect to " + h.send_spec);
        if (!recvs.insert(h.recv_spec).second)
            throw ConfigError("recv_spec: two handlers connect to " + h.recv_spec);
    }
}

CommandLine parse_command_line(int argc, char** argv) {
    CLI::App app{"m2bridge: CGI and FastCGI applications behind Mongrel2", "m2bridge"};
    app.set_version_flag("--version", [] {
        return std::string("m2bridge ") + kVersion + " (ZMTP 3.1, built " + __DATE__ + " with g++ " + __VERSION__ + ")";
    });
    app.require_subcommand(0, 1);
    CommandLine result;
    ServiceConfig& service = result.config;
    HandlerConfig c;
    std::string config_file;
    app.add_option("--config", config_file, "run every [[handler]] of this TOML file");
    app.add_option("--log-level", service.log_level, "error, warn, info or debug (overrides the file's)")
        ->check(CLI::IsMember({"error", "warn", "info", "debug"}));

    // One subcommand per mode (modes.h); each takes the options that apply to it.
    std::map<Mode, CLI::App*> subcommands;
    std::vector<std::string> operands;
    for (const ModeInfo& m : modes()) {
        CLI::App* sub = app.add_subcommand(m.name, m.description);
        add_handler_options(sub, c, m.mode);
        add_process_options(sub, service);
        subcommands[m.mode] = sub;
        if (m.mode == Mode::FastCgi) {
            sub->add_option("--spawn", c.spawn_instances,
                            "start N copies of the FastCGI program given after --, on a socket m2bridge owns")
                ->check(CLI::Range(size_t{1}, size_t{1024}));
            sub->add_option("ADDRESS", operands, "unix:/path.sock or HOST:PORT; with --spawn: -- CMD [ARG...]");
        } else if (m.address) {
            sub->add_option("ADDRESS", operands, "unix:/path.sock or HOST:PORT")->required();
        } else {
            sub->add_option("PATH", operands, "a CGI program, or a directory whose scripts the path picks")->required();
        }
    }
    // --send-spec and --recv-spec may be given once per Mongrel2 server.
    std::vector<std::string> send_specs, recv_specs;
    for (auto& [mode, sub] : subcommands) {
        for (auto [name, list, fallback] : {std::tuple{"--send-spec", &send_specs, &c.send_spec},
                                            std::tuple{"--recv-spec", &recv_specs, &c.recv_spec}}) {
            CLI::Option* single = sub->get_option(name);
            std::string help = single->get_description() + " (once per Mongrel2 server)";
            sub->remove_option(single);
            sub->add_option(name, *list, help)->allow_extra_args(false)->default_str(*fallback);
        }
    }
    auto parsed_mode = [&]() -> std::optional<Mode> {
        for (const auto& [mode, sub] : subcommands)
            if (sub->parsed()) return mode;
        return std::nullopt;
    };

    auto* check = app.add_subcommand("check", "validate the config file, print it resolved; exit 0 or 2");
    check->add_option("--config", config_file, "the TOML file")->required();

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        std::exit(app.exit(e));
    } catch (const CLI::CallForAllHelp& e) {
        std::exit(app.exit(e));
    } catch (const CLI::CallForVersion& e) {
        std::exit(app.exit(e));
    } catch (const CLI::ParseError& e) {
        std::string what = e.what();
        usage_error(what.empty() ? "bad command line (see --help)" : what);
    }

    try {
        if (!config_file.empty()) {
            if (parsed_mode())
                throw ConfigError("--config: give either a config file or a mode (" + mode_names() + "), not both");
            std::string level = service.log_level;
            bool level_given = app.count("--log-level") > 0;
            service = load_config_file(config_file);
            if (level_given) service.log_level = level;
            result.log_level_given = level_given;
            result.action = check->parsed() ? Action::Check : Action::Run;
            return result;
        }
        std::optional<Mode> mode = parsed_mode();
        if (!mode) throw ConfigError("nothing to run: give a mode (" + mode_names() + ") or --config FILE (see --help)");
        if (send_specs.size() > 1 || recv_specs.size() > 1) {
            if (send_specs.size() != recv_specs.size())
                throw ConfigError("--send-spec, --recv-spec: give them in pairs, one of each per Mongrel2 server (" +
                                  std::to_string(send_specs.size()) + " and " + std::to_string(recv_specs.size()) + ")");
            for (size_t i = 1; i < send_specs.size(); ++i) c.other_servers.emplace_back(send_specs[i], recv_specs[i]);
        }
        if (!send_specs.empty()) c.send_spec = send_specs[0];
        if (!recv_specs.empty()) c.recv_spec = recv_specs[0];
        c.mode = *mode;
        const ModeInfo& info = mode_info(c.mode);
        if (c.spawns()) {
            c.spawn_command = operands;
        } else {
            const char* operand = info.address ? "ADDRESS" : "PATH";
            if (operands.empty())
                throw ConfigError(std::string(operand) + ": required" +
                                  (c.mode == Mode::FastCgi ? " (or --spawn N -- CMD)" : ""));
            if (!info.address && operands.size() > 1)
                throw ConfigError("PATH: one, not " + std::to_string(operands.size()));
            c.backend = operands[0];
            c.other_backends.assign(operands.begin() + 1, operands.end());
        }
        finish_handler(c, false);
        service.handlers.push_back(std::move(c));
        finish_service(service);
    } catch (const ConfigError& e) {
        usage_error(e.what());
    }
    return result;
}

namespace {

toml::table handler_table(const HandlerConfig& h) {
    toml::table t;
    t.insert("name", h.name);
    if (h.spawns()) {
        toml::array command;
        for (const auto& arg : h.spawn_command) command.push_back(arg);
        t.insert("spawn", toml::table{{"command", command}, {"instances", static_cast<int64_t>(h.spawn_instances)}});
    } else if (h.other_backends.empty()) {
        t.insert(mode_info(h.mode).name, h.backend);
    } else {
        toml::array addresses{h.backend};
        for (const auto& address : h.other_backends) addresses.push_back(address);
        t.insert(mode_info(h.mode).name, addresses);
    }
    for (const OptionSpec& spec : handler_options()) {
        if (!spec.applies_to(h.mode)) continue;
        std::visit(
            [&](auto member) {
                using T = std::remove_cvref_t<decltype(h.*member)>;
                const T& value = h.*member;
                if constexpr (std::is_same_v<T, std::vector<std::string>>) {
                    toml::array list;
                    for (const auto& v : value) list.push_back(v);
                    t.insert(spec.key, list);
                } else if constexpr (std::is_same_v<T, size_t>) {
                    t.insert(spec.key, static_cast<int64_t>(value));
                } else if constexpr (std::is_same_v<T, std::optional<bool>>) {
                    if (value) t.insert(spec.key, *value);
                } else {
                    t.insert(spec.key, value);
                }
            },
            spec.field);
    }
    if (h.mode == Mode::Cgi) t.insert_or_assign("max_procs", static_cast<int64_t>(h.max_requests));
    return t;
}

}  // namespace

std::string to_toml(const HandlerConfig& h) {
    std::ostringstream out;
    out << handler_table(h);
    return out.str();
}

std::string to_toml(const ServiceConfig& c) {
    toml::table top;
    if (!c.user.empty()) top.insert("user", c.user);
    if (!c.metrics.empty()) top.insert("metrics", c.metrics);
    top.insert("log_level", c.log_level);
    top.insert("grace", c.grace_seconds);
    toml::array handlers;
    for (const auto& h : c.handlers) handlers.push_back(handler_table(h));
    top.insert("handler", handlers);
    std::ostringstream out;
    out << top << "\n";
    return out.str();
}

}  // namespace m2b
