// The TOML config file (m2bridge.toml(5)): top-level process keys and one
// [[handler]] table per Mongrel2 Handler. Every mistake is one ConfigError
// "FILE:LINE: key: what is wrong".
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <toml++/toml.h>

#include "bridge/config.h"
#include "bridge/config_options.h"
#include "bridge/modes.h"
#include "base/log.h"

namespace m2b {

namespace {

const char* type_name(const toml::node& n) {
    switch (n.type()) {
        case toml::node_type::string: return "a string";
        case toml::node_type::integer: return "an integer";
        case toml::node_type::floating_point: return "a number";
        case toml::node_type::boolean: return "a boolean";
        case toml::node_type::array: return "an array";
        case toml::node_type::table: return "a table";
        default: return "a date or time";
    }
}

class FileReader {
public:
    explicit FileReader(std::string path) : path_(std::move(path)) {}

    ServiceConfig read(std::string_view source) {
        toml::table top;
        try {
            top = toml::parse(source, path_);
        } catch (const toml::parse_error& e) {
            throw ConfigError(path_ + ":" + std::to_string(e.source().begin.line) + ": " + std::string(e.description()));
        } catch (const std::exception& e) {
            throw ConfigError(path_ + ": " + e.what());
        }
        ServiceConfig c;
        c.config_file = path_;
        bool any_handler = false;
        for (auto&& [key, node] : top) {
            std::string k(key.str());
            if (k == "user") c.user = text(node, k);
            else if (k == "metrics") c.metrics = text(node, k);
            else if (k == "log_level") c.log_level = text(node, k);
            else if (k == "grace") c.grace_seconds = seconds(node, k, 0, 3600, false);
            else if (k == "handler") {
                const toml::array* list = node.as_array();
                if (!list || !list->is_array_of_tables())
                    fail(node, k, "must be tables: write each one as [[handler]]");
                for (const toml::node& table : *list) {
                    c.handlers.push_back(handler(*table.as_table(), c.handlers.size() + 1));
                    any_handler = true;
                }
            } else {
                fail(node, k, std::string("unknown key") +
                                  (is_handler_key(k) ? " at the top level: it belongs in a [[handler]] table" : ""));
            }
        }
        if (!any_handler) throw ConfigError(path_ + ": no [[handler]] table: nothing to run");
        try {
            finish_service(c);
        } catch (const ConfigError& e) {
            throw ConfigError(path_ + ": " + e.what());
        }
        return c;
    }

private:
    [[noreturn]] void fail(const toml::node& n, const std::string& key, const std::string& what) const {
        throw ConfigError(path_ + ":" + std::to_string(n.source().begin.line) + ": " + key + ": " + what);
    }
    static bool is_handler_key(const std::string& k) {
        for (const OptionSpec& spec : handler_options())
            if (k == spec.key) return true;
        return k == "name" || is_backend_key(k);
    }
    // "fastcgi", "cgi", ... (modes.h) and "spawn" (a FastCGI server m2bridge starts).
    static bool is_backend_key(const std::string& k) {
        if (k == "spawn") return true;
        for (const ModeInfo& m : modes())
            if (k == m.name) return true;
        return false;
    }

    std::string text(const toml::node& n, const std::string& key) const {
        if (!n.is_string()) fail(n, key, std::string("must be a string, not ") + type_name(n));
        return *n.value<std::string>();
    }
    bool flag(const toml::node& n, const std::string& key) const {
        if (!n.is_boolean()) fail(n, key, std::string("must be true or false, not ") + type_name(n));
        return *n.value<bool>();
    }
    double number(const toml::node& n, const std::string& key) const {
        if (!n.is_number()) fail(n, key, std::string("must be a number, not ") + type_name(n));
        std::optional<double> v = n.value<double>();  // empty for an integer no double holds exactly
        if (!v || std::isnan(*v)) fail(n, key, "out of range");
        return *v;
    }
    double seconds(const toml::node& n, const std::string& key, double min, double max, bool zero_ok) const {
        double v = number(n, key);
        if (!((v >= min && v <= max) || (zero_ok && v == 0)) || std::isnan(v))
            fail(n, key, "must be between " + std::to_string(min) + " and " + std::to_string(max));
        return v;
    }
    size_t count(const toml::node& n, const std::string& key) const {
        if (!n.is_integer()) fail(n, key, std::string("must be an integer, not ") + type_name(n));
        int64_t v = *n.value<int64_t>();
        if (v < 0) fail(n, key, "must not be negative");
        return static_cast<size_t>(v);
    }
    std::vector<std::string> names(const toml::node& n, const std::string& key) const {
        const toml::array* list = n.as_array();
        if (!list) fail(n, key, std::string("must be an array of strings, not ") + type_name(n));
        std::vector<std::string> out;
        for (const toml::node& item : *list) out.push_back(text(item, key));
        return out;
    }

    HandlerConfig handler(const toml::table& t, size_t position) {
        HandlerConfig h;
        const std::string where = "handler " + std::to_string(position);
        const toml::node* backend = nullptr;
        int backends = 0;
        std::string backend_key;
        for (auto&& [key, node] : t)
            if (is_backend_key(std::string(key.str()))) {
                backend = &node;
                backend_key = key.str();
                ++backends;
            }
        if (backends != 1)
            throw ConfigError(path_ + ":" + std::to_string(t.source().begin.line) + ": " + where +
                              ": give exactly one of " + mode_names(", ") + " or spawn");
        if (backend_key != "spawn") {
            for (const ModeInfo& m : modes())
                if (backend_key == m.name) h.mode = m.mode;
            if (backend->is_array() && mode_info(h.mode).address) {  // several backends, balanced
                std::vector<std::string> all = names(*backend, backend_key);
                if (all.empty()) fail(*backend, backend_key, "must name at least one address");
                h.backend = all[0];
                h.other_backends.assign(all.begin() + 1, all.end());
            } else {
                h.backend = text(*backend, backend_key);
            }
        } else {
            const toml::table* spawn = backend->as_table();
            if (!spawn) fail(*backend, "spawn", "must be a table: spawn = { command = [...], instances = N }");
            for (auto&& [key, node] : *spawn) {
                std::string k(key.str());
                if (k == "command") h.spawn_command = names(node, "spawn.command");
                else if (k == "instances") h.spawn_instances = count(node, "spawn.instances");
                else fail(node, "spawn." + k, "unknown key (spawn has command and instances)");
            }
            if (h.spawn_command.empty()) fail(*backend, "spawn.command", "must name the program to start");
            if (h.spawn_instances == 0) h.spawn_instances = 1;
            if (h.spawn_instances > 1024) fail(*backend, "spawn.instances", "must be between 1 and 1024");
        }
        // send_spec and recv_spec may be arrays: one of each per Mongrel2 server.
        std::vector<std::string> send_specs, recv_specs;
        for (auto [k, list] : {std::pair{"send_spec", &send_specs}, std::pair{"recv_spec", &recv_specs}})
            if (const toml::node* n = t.get(k); n && n->is_array()) {
                *list = names(*n, k);
                if (list->empty()) fail(*n, k, "must name at least one endpoint");
            }
        if (!send_specs.empty() || !recv_specs.empty()) {
            // One array and one string: the string is a list of one.
            for (auto [k, list] : {std::pair{"send_spec", &send_specs}, std::pair{"recv_spec", &recv_specs}})
                if (const toml::node* n = t.get(k); list->empty() && n) list->push_back(text(*n, k));
            if (send_specs.size() != recv_specs.size())
                throw ConfigError(path_ + ":" + std::to_string(t.source().begin.line) + ": " + where +
                                  ": send_spec and recv_spec: give one of each per Mongrel2 server (" +
                                  std::to_string(send_specs.size()) + " and " + std::to_string(recv_specs.size()) + ")");
            h.send_spec = send_specs[0];
            h.recv_spec = recv_specs[0];
            for (size_t i = 1; i < send_specs.size(); ++i) h.other_servers.emplace_back(send_specs[i], recv_specs[i]);
        }
        for (auto&& [key, value] : t) {
            const toml::node& node = value;  // a structured binding cannot be captured before clang 16
            std::string k(key.str());
            if (is_backend_key(k)) continue;
            if (!send_specs.empty() && (k == "send_spec" || k == "recv_spec")) continue;
            if (k == "name") {
                h.name = text(node, k);
                continue;
            }
            const OptionSpec* spec = nullptr;
            for (const OptionSpec& s : handler_options())
                if (k == s.key) spec = &s;
            if (!spec) fail(node, k, k == "user" || k == "metrics" || k == "log_level" || k == "grace"
                                         ? "is a top-level key (one per process), not a handler key"
                                         : "unknown key");
            if (!spec->applies_to(h.mode))
                fail(node, k, "applies only to " + spec->applies_to_text());
            std::visit(
                [&](auto member) {
                    using T = std::remove_reference_t<decltype(h.*member)>;
                    if constexpr (std::is_same_v<T, bool> || std::is_same_v<T, std::optional<bool>>) {
                        h.*member = flag(node, k);
                    } else if constexpr (std::is_same_v<T, std::string>) {
                        h.*member = text(node, k);
                    } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
                        h.*member = names(node, k);
                    } else {
                        double v = std::is_same_v<T, size_t> ? static_cast<double>(count(node, k)) : number(node, k);
                        std::string range = spec->check(v);
                        if (!range.empty()) fail(node, k, "must be " + range);
                        h.*member = static_cast<T>(v);
                    }
                },
                spec->field);
        }
        try {
            finish_handler(h, true);
        } catch (const ConfigError& e) {
            throw ConfigError(path_ + ":" + std::to_string(t.source().begin.line) + ": " + where +
                              (h.name.empty() ? "" : " (" + h.name + ")") + ": " + e.what());
        }
        return h;
    }

    std::string path_;
};

}  // namespace

ServiceConfig load_config_text(std::string_view text, const std::string& path) {
    try {
        return FileReader(path).read(text);
    } catch (const ConfigError& e) {
        throw ConfigError(log::one_line(e.what()));  // keys and values quoted from the file may hold newlines
    }
}

ServiceConfig load_config_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw ConfigError(path + ": cannot read: " + std::strerror(errno));
    // A config is small; anything this large is a mistake (a log file named by accident).
    constexpr std::streamsize kMaxConfigBytes = 4 * 1024 * 1024;
    std::string text(static_cast<size_t>(kMaxConfigBytes) + 1, '\0');
    in.read(text.data(), kMaxConfigBytes + 1);
    if (in.bad()) throw ConfigError(path + ": cannot read: " + std::strerror(errno));
    if (in.gcount() > kMaxConfigBytes) throw ConfigError(path + ": larger than 4 MiB; not a config file");
    text.resize(static_cast<size_t>(in.gcount()));
    return load_config_text(text, path);
}

}  // namespace m2b
