// The scripts' cgroups against the real cgroup2 file system (skipped where none can be made).
#include <doctest/doctest.h>

#include <csignal>
#include <filesystem>
#include <iterator>
#include <utility>
#include <fstream>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include "adapters/cgi/cgroup.h"

using namespace m2b;

namespace {

// A process that waits in `group`, as a script (or what it left behind) would.
pid_t process_in(const std::string& group) {
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        pause();
        _exit(0);
    }
    std::ofstream(group + "/cgroup.procs") << pid;
    return pid;
}

}  // namespace

TEST_CASE("a released cgroup is reused only once empty, read again through its kept cgroup.events") {
    ScriptCgroups cgroups;
    if (!cgroups.enabled()) {
        MESSAGE("skipped: scripts not confined here (" << cgroups.why_not() << ")");
        return;
    }
    std::string group = cgroups.create();
    REQUIRE_FALSE(group.empty());
    CHECK(cgroups.directory(group) >= 0);
    CHECK(cgroups.directory(group) == cgroups.directory(group));  // opened once

    pid_t child = process_in(group);  // what a script's straggler would be
    cgroups.release(group);  // populated: not handed out again
    std::string second = cgroups.create();
    CHECK(second != group);

    kill(child, SIGKILL);
    REQUIRE(waitpid(child, nullptr, 0) == child);
    // The kernel marks the group empty shortly after the exit. Fresh groups made meanwhile
    // are released only at the end: released now, one would come back before `group`.
    std::vector<std::string> fresh;
    std::string again;
    for (int i = 0; i < 200 && again != group; ++i) {
        cgroups.sweep();
        again = cgroups.create();
        if (again != group) {
            fresh.push_back(again);
            usleep(10 * 1000);
        }
    }
    CHECK(again == group);
    cgroups.release(again);
    cgroups.release(second);
    for (const auto& g : fresh) cgroups.release(g);
}

TEST_CASE("a gateway's cgroups going away (a handler removed by a reload) leave another gateway's scripts running") {
    ScriptCgroups kept;
    if (!kept.enabled()) {
        MESSAGE("skipped: scripts not confined here (" << kept.why_not() << ")");
        return;
    }
    std::string group = kept.create();
    REQUIRE_FALSE(group.empty());
    pid_t script = process_in(group);
    {
        ScriptCgroups removed;  // a second CGI handler in the same process
        CHECK(removed.path() != kept.path());
        removed.release(removed.create());
    }  // its destructor kills whatever is left in its cgroups
    usleep(100 * 1000);
    CHECK(waitpid(script, nullptr, WNOHANG) == 0);  // still running
    kill(script, SIGKILL);
    REQUIRE(waitpid(script, nullptr, 0) == script);
    kept.release(group);
}

TEST_CASE("a released cgroup that something a script left behind still populates keeps no descriptor open") {
    ScriptCgroups cgroups;
    if (!cgroups.enabled()) {
        MESSAGE("skipped: scripts not confined here (" << cgroups.why_not() << ")");
        return;
    }
    auto open_fds = [] { return std::distance(std::filesystem::directory_iterator("/proc/self/fd"), {}); };
    auto before = open_fds();
    // A hundred requests whose scripts each leave a process behind: their groups stay populated.
    std::vector<std::pair<std::string, pid_t>> lingering;
    for (int i = 0; i < 100; ++i) {
        std::string group = cgroups.create();
        REQUIRE_FALSE(group.empty());
        REQUIRE(cgroups.directory(group) >= 0);  // as a spawn opens it
        lingering.emplace_back(group, process_in(group));
        cgroups.release(group);
    }
    CHECK(open_fds() == before);
    for (auto& [group, pid] : lingering) {
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
    }
}
