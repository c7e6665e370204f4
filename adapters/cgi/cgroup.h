// Scripts' cgroups (v2): a script's grandchild that calls setsid() leaves the
// process group m2bridge kills, but it cannot leave its cgroup. Each request
// runs in OUR_CGROUP/m2bridge-scripts.PID/req-N (the script is cloned straight
// into it), so killing a request reaches all of its processes, and m2bridge's
// exit reaches every script process left. Where no cgroup can be made, every
// call does nothing and scripts have their process groups only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace m2b {

class ScriptCgroups {
public:
    ScriptCgroups();   // creates the scripts' cgroup, or says in why_not() why not
    ~ScriptCgroups();  // kills every process left in it and removes it
    ScriptCgroups(const ScriptCgroups&) = delete;
    ScriptCgroups& operator=(const ScriptCgroups&) = delete;

    bool enabled() const { return !root_.empty(); }
    const std::string& path() const { return root_; }
    const std::string& why_not() const { return why_not_; }

    // A new, empty cgroup for one request; "" when it cannot be made.
    std::string create();
    // SIGKILL to every process in `group` (cgroup.kill).
    void kill(const std::string& group);
    // Removes `group` now if it is empty, else at a later sweep().
    void release(const std::string& group);
    // Retries removing released groups: call when processes may have exited.
    void sweep();

private:
    std::string root_;
    std::string why_not_;
    uint64_t next_id_ = 1;
    std::vector<std::string> released_;  // not yet empty when released
};

}  // namespace m2b
