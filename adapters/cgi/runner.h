// CGI programs, one process per request (RFC 3875): started in a process
// group of its own (and a cgroup, where one can be made: adapters/cgi/cgroup.h),
// request environment only, body on stdin, response from stdout, stderr to the
// log; all pipes non-blocking on the loop.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <sys/types.h>
#include <unordered_map>
#include <vector>

#include "adapters/cgi/cgroup.h"
#include "adapters/gateway.h"
#include "base/exec_child.h"
#include "base/life_token.h"
#include "base/loop.h"
#include "base/unique_fd.h"

namespace m2b {

struct CgiOptions {
    std::chrono::milliseconds timeout{60000};
    std::chrono::milliseconds kill_grace{1000};  // between SIGTERM and SIGKILL
    // "NAME=value" entries of m2bridge's own environment the user allowed (--pass-env).
    std::vector<std::string> passed_env;
};

inline constexpr const char* kCgiPath = "PATH=/usr/local/bin:/usr/bin:/bin";

class CgiGateway : public Gateway {
public:
    CgiGateway(Loop& loop, CgiOptions options);
    ~CgiGateway() override;

    std::unique_ptr<Exchange> start(const CgiEnv& env, const BodySource& body, uint64_t conn_id,
                                    ExchangeSink& sink) override;
    std::string_view describe() const override { return "cgi"; }

    // Used by exchanges.
    void on_exit(pid_t pid, std::function<void(int status)> callback);
    void forget(pid_t pid);
    // SIGTERM to the group now, SIGKILL to it and to `cgroup` (if any) after the grace time.
    void kill_group(pid_t pgid, const std::string& cgroup);
    ScriptCgroups& cgroups() { return cgroups_; }
    Loop& loop() { return loop_; }
    const CgiOptions& options() const { return options_; }
    const SignalsToReset& signals_to_reset() const { return signals_to_reset_; }
    int null_input() const { return null_input_.get(); }  // /dev/null, or -1 (then a pipe)
    size_t running_children() const { return children_.size(); }

private:
    static void reap_all(Loop& loop);
    void reap_children();

    Loop& loop_;
    CgiOptions options_;
    std::unordered_map<pid_t, std::function<void(int)>> children_;
    ScriptCgroups cgroups_;
    SignalsToReset signals_to_reset_ = signals_not_default();
    UniqueFd null_input_;
    LifeToken life_;  // kill timers do nothing once the gateway is gone
};

}  // namespace m2b
