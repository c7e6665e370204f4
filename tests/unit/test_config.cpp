// The TOML config reader (bridge/config_file.cpp) and the resolved text that
// `m2bridge check` prints and reload compares.
#include <doctest/doctest.h>

#include <string>
#include <utility>
#include <vector>

#include "bridge/config.h"

using namespace m2b;

namespace {

std::string error_of(const std::string& text) {
    try {
        load_config_text(text, "m2b.toml");
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "";
}

// The config a command line gives, as main() would parse it.
ServiceConfig parse_args(std::vector<std::string> args) {
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    return parse_command_line(static_cast<int>(argv.size()), argv.data()).config;
}

}  // namespace

TEST_CASE("config: a minimal handler gets every default and a name") {
    ServiceConfig c = load_config_text("[[handler]]\nfastcgi = \"127.0.0.1:9000\"\n", "m2b.toml");
    REQUIRE(c.handlers.size() == 1);
    const HandlerConfig& h = c.handlers[0];
    CHECK(h.name == "handler-1");
    CHECK(h.mode == Mode::FastCgi);
    CHECK(h.backend == "127.0.0.1:9000");
    CHECK(h.send_spec == "tcp://127.0.0.1:9997");
    CHECK(h.timeout_seconds == 60);
    CHECK(h.max_requests == 64);
    CHECK(c.grace_seconds == 10);
    CHECK(c.config_file == "m2b.toml");
}

TEST_CASE("config: keys fill the handler; numbers may be integers or floats") {
    ServiceConfig c = load_config_text(
        "log_level = \"warn\"\ngrace = 2.5\n"
        "[[handler]]\nname = \"php\"\nfastcgi = \"unix:/run/php.sock\"\ntimeout = 5\nkeepalive = 0.5\n"
        "max_requests = 8\nkeep_conn = true\ndisconnect_path = \"/gone.php?x=1\"\n"
        "[[handler]]\nsend_spec = \"tcp://127.0.0.1:1\"\nrecv_spec = \"tcp://127.0.0.1:2\"\n"
        "cgi = \"/bin/true\"\nallow_root = true\npass_env = [\"HOME\", \"LANG\"]\nmax_procs = 3\n",
        "m2b.toml");
    CHECK(c.log_level == "warn");
    CHECK(c.grace_seconds == 2.5);
    REQUIRE(c.handlers.size() == 2);
    CHECK(c.handlers[0].timeout_seconds == 5);
    CHECK(c.handlers[0].keepalive_seconds == 0.5);
    CHECK(c.handlers[0].keep_conn == true);
    CHECK(c.handlers[0].disconnect_path == "/gone.php?x=1");
    CHECK(c.handlers[1].name == "handler-2");
    CHECK(c.handlers[1].mode == Mode::Cgi);
    CHECK(c.handlers[1].backend == "/usr/bin/true");  // canonical
    CHECK(c.handlers[1].allow_root);
    CHECK(c.handlers[1].pass_env == std::vector<std::string>{"HOME", "LANG"});
    CHECK(c.handlers[1].max_requests == 3);  // max_procs is the cgi spelling
}

TEST_CASE("config: backend connections are kept by default over unix sockets, not over TCP") {
    auto keep = [](const std::string& keys) {
        return load_config_text("[[handler]]\n" + keys, "m2b.toml").handlers[0].keep_conn;
    };
    CHECK(keep("fastcgi = \"unix:/run/php.sock\"\n") == true);
    CHECK(keep("fastcgi = \"127.0.0.1:9000\"\n") == false);
    CHECK(keep("fastcgi = \"127.0.0.1:9000\"\nkeep_conn = true\n") == true);
    CHECK(keep("fastcgi = \"unix:/run/php.sock\"\nkeep_conn = false\n") == false);
    CHECK(keep("cgi = \"/bin/true\"\n") == std::nullopt);

    auto keep_cli = [](std::vector<std::string> args) { return parse_args(std::move(args)).handlers.at(0).keep_conn; };
    CHECK(keep_cli({"m2bridge", "fastcgi", "unix:/run/php.sock"}) == true);
    CHECK(keep_cli({"m2bridge", "fastcgi", "--no-keep-conn", "unix:/run/php.sock"}) == false);
    CHECK(keep_cli({"m2bridge", "fastcgi", "127.0.0.1:9000"}) == false);
    CHECK(keep_cli({"m2bridge", "fastcgi", "--keep-conn", "127.0.0.1:9000"}) == true);
}

TEST_CASE("config: spawn takes a command and a number of instances") {
    ServiceConfig c = load_config_text("[[handler]]\nspawn = { command = [\"cat\", \"-u\"], instances = 3 }\n", "m2b.toml");
    const HandlerConfig& h = c.handlers[0];
    CHECK(h.spawns());
    CHECK(h.spawn_instances == 3);
    CHECK(h.spawn_command.size() == 2);
    CHECK(h.spawn_command[0].ends_with("/cat"));  // looked up in PATH
}

TEST_CASE("config: every mistake names the file, the line and the key") {
    const std::string ok = "[[handler]]\nfastcgi = \"127.0.0.1:9000\"\n";
    CHECK(error_of(ok + "timeout = \"x\"\n") == "m2b.toml:3: timeout: must be a number, not a string");
    CHECK(error_of(ok + "timeout = 0\n") == "m2b.toml:3: timeout: must be between 0.01 and 604800");
    CHECK(error_of(ok + "deadline = 0\n") == "");  // 0 means no limit
    CHECK(error_of(ok + "queue = -1\n") == "m2b.toml:3: queue: must not be negative");
    CHECK(error_of(ok + "queue = 1.5\n") == "m2b.toml:3: queue: must be an integer, not a number");
    CHECK(error_of(ok + "keep_conn = 1\n") == "m2b.toml:3: keep_conn: must be true or false, not an integer");
    CHECK(error_of(ok + "colour = 1\n") == "m2b.toml:3: colour: unknown key");
    CHECK(error_of(ok + "pass_env = [\"A\"]\n") == "m2b.toml:3: pass_env: applies only to cgi handlers");
    CHECK(error_of("[[handler]]\nscgi = \"127.0.0.1:9000\"\nkeep_conn = true\n") ==
          "m2b.toml:3: keep_conn: applies only to fastcgi handlers");
    CHECK(error_of("[[handler]]\ncgi = \"/bin/true\"\nmax_requests = 2\n") ==
          "m2b.toml:3: max_requests: applies only to fastcgi, scgi and uwsgi handlers");
    CHECK(error_of("[[handler]]\nscgi = \"127.0.0.1:9000\"\nuwsgi = \"127.0.0.1:9001\"\n") ==
          "m2b.toml:1: handler 1: give exactly one of fastcgi, cgi, scgi, uwsgi or spawn");
    CHECK(error_of("[[handler]]\nuwsgi = \"nowhere\"\n") ==
          "m2b.toml:1: handler 1: uwsgi: nowhere: expected unix:/path or HOST:PORT");
    CHECK(error_of(ok + "metrics = \"9100\"\n") ==
          "m2b.toml:3: metrics: is a top-level key (one per process), not a handler key");
    CHECK(error_of("index = \"a\"\n" + ok) ==
          "m2b.toml:1: index: unknown key at the top level: it belongs in a [[handler]] table");
    CHECK(error_of("handler = 3\n") == "m2b.toml:1: handler: must be tables: write each one as [[handler]]");
    CHECK(error_of("[[handler]]\nname = \"x\"\n") == "m2b.toml:1: handler 1: give exactly one of fastcgi, cgi, scgi, uwsgi or spawn");
    CHECK(error_of("[[handler]]\nspawn = { command = [] }\n") == "m2b.toml:2: spawn.command: must name the program to start");
    CHECK(error_of("[[handler]]\nspawn = { command = [\"cat\"], every = 1 }\n") ==
          "m2b.toml:2: spawn.every: unknown key (spawn has command and instances)");
    CHECK(error_of("") == "m2b.toml: no [[handler]] table: nothing to run");
    CHECK(error_of(ok + ok) == "m2b.toml: send_spec: two handlers connect to tcp://127.0.0.1:9997");
    CHECK(error_of("[[handler]]\nfastcgi = \"x\"\nindex = \"a/b\"\n") ==
          "m2b.toml:1: handler 1: index: must be a file name, not a path: a/b");
    CHECK(error_of(ok + "send_spec = \"tcp://nowhere\"\n") ==
          "m2b.toml:1: handler 1: send_spec: tcp://nowhere: expected tcp://HOST:PORT with a port from 1 to 65535");
    CHECK(error_of(ok + "recv_spec = \"udp://h:1\"\n") ==
          "m2b.toml:1: handler 1: recv_spec: udp://h:1: unknown transport udp (tcp or ipc)");
    // One line, whatever the file quotes back.
    CHECK(error_of(ok + "\"a\\nb\" = 1\n") == "m2b.toml:3: a\\x0ab: unknown key");
    std::string syntax = error_of("[[handler]\n");
    CHECK(syntax.starts_with("m2b.toml:1: "));
}

TEST_CASE("config: the resolved text reads back as the same config") {
    ServiceConfig c = load_config_text(
        "grace = 3\n[[handler]]\nname = \"php\"\nfastcgi = \"unix:/run/php.sock\"\ntimeout = 7\n"
        "[[handler]]\nsend_spec = \"tcp://127.0.0.1:1\"\nrecv_spec = \"tcp://127.0.0.1:2\"\n"
        "spawn = { command = [\"cat\"], instances = 2 }\n"
        "[[handler]]\nsend_spec = \"tcp://127.0.0.1:3\"\nrecv_spec = \"tcp://127.0.0.1:4\"\nscgi = \"unix:/run/a.sock\"\n"
        "[[handler]]\nsend_spec = \"tcp://127.0.0.1:5\"\nrecv_spec = \"tcp://127.0.0.1:6\"\nuwsgi = \"127.0.0.1:3031\"\n"
        "max_requests = 9\n",
        "m2b.toml");
    CHECK(c.handlers[2].mode == Mode::Scgi);
    CHECK(c.handlers[2].keep_conn == std::nullopt);  // a FastCGI option only
    CHECK(c.handlers[3].mode == Mode::Uwsgi);
    CHECK(c.handlers[3].backend == "127.0.0.1:3031");
    CHECK(c.handlers[3].max_requests == 9);
    std::string text = to_toml(c);
    CHECK(text.find("uwsgi = '127.0.0.1:3031'") != std::string::npos);
    ServiceConfig again = load_config_text(text, "resolved.toml");
    CHECK(to_toml(again) == text);
    CHECK(to_toml(again.handlers[0]) == to_toml(c.handlers[0]));
    CHECK(to_toml(again.handlers[1]) != to_toml(c.handlers[0]));
    CHECK(again.handlers[3].mode == Mode::Uwsgi);
}

TEST_CASE("config: one handler per Mongrel2 server, from repeated specs or arrays") {
    ServiceConfig c = load_config_text(
        "[[handler]]\nname = \"php\"\nfastcgi = \"unix:/run/php.sock\"\n"
        "send_spec = [\"tcp://127.0.0.1:1\", \"tcp://127.0.0.1:3\"]\nrecv_spec = [\"tcp://127.0.0.1:2\", \"tcp://127.0.0.1:4\"]\n",
        "m2b.toml");
    REQUIRE(c.handlers.size() == 2);
    CHECK(c.handlers[0].name == "php");
    CHECK(c.handlers[0].send_spec == "tcp://127.0.0.1:1");
    CHECK(c.handlers[1].name == "php-2");
    CHECK(c.handlers[1].send_spec == "tcp://127.0.0.1:3");
    CHECK(c.handlers[1].recv_spec == "tcp://127.0.0.1:4");
    CHECK(c.handlers[1].backend == "unix:/run/php.sock");
    CHECK(load_config_text(to_toml(c), "again.toml").handlers.size() == 2);  // the resolved text reads back
    CHECK(error_of("[[handler]]\nfastcgi = \"unix:/a\"\nsend_spec = [\"tcp://127.0.0.1:1\", \"tcp://127.0.0.1:3\"]\n"
                   "recv_spec = \"tcp://127.0.0.1:2\"\n") ==
          "m2b.toml:1: handler 1: send_spec and recv_spec: give one of each per Mongrel2 server (2 and 1)");

    ServiceConfig cli = parse_args({"m2bridge", "scgi", "--send-spec", "tcp://127.0.0.1:5", "--recv-spec", "tcp://127.0.0.1:6",
                               "--send-spec", "tcp://127.0.0.1:7", "--recv-spec", "tcp://127.0.0.1:8", "unix:/run/app.sock"});
    REQUIRE(cli.handlers.size() == 2);
    CHECK(cli.handlers[0].name == "handler-1");
    CHECK(cli.handlers[1].name == "handler-2");
    CHECK(cli.handlers[1].send_spec == "tcp://127.0.0.1:7");
    CHECK(cli.handlers[1].recv_spec == "tcp://127.0.0.1:8");
    CHECK(cli.handlers[1].backend == "unix:/run/app.sock");
    CHECK(cli.handlers[1].mode == Mode::Scgi);
}

TEST_CASE("config: scgi and uwsgi are subcommands taking one ADDRESS") {
    auto parse = [](std::vector<std::string> args) { return parse_args(std::move(args)).handlers.at(0); };
    HandlerConfig s = parse({"m2bridge", "scgi", "--max-requests", "5", "unix:/run/app.sock"});
    CHECK(s.mode == Mode::Scgi);
    CHECK(s.backend == "unix:/run/app.sock");
    CHECK(s.max_requests == 5);
    HandlerConfig u = parse({"m2bridge", "uwsgi", "--script-filename", "/srv/app.py", "127.0.0.1:3031"});
    CHECK(u.mode == Mode::Uwsgi);
    CHECK(u.script_filename == "/srv/app.py");
}
