// ZMTP as m2bridge reads it from Mongrel2: the codec's functions (and the
// endpoint grammar) on the raw input, then the same bytes through a real
// ZmtpConnection on a unix socket (its buffering, large and skipped frames,
// multipart, commands). The first
// byte chooses whether the input follows a valid greeting and READY, or is
// the peer's handshake itself.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/loop.h"
#include "base/log.h"
#include "bridge/zmtp.h"
#include "bridge/zmtp_connection.h"

namespace {
void codec(std::string_view in) {
    std::string why;
    m2b::zmtp::check_greeting(in, why);
    m2b::zmtp::Endpoint endpoint;
    m2b::zmtp::parse_endpoint(in, endpoint, why);
    m2b::zmtp::FrameHead head;
    std::string_view rest = in;
    while (m2b::zmtp::parse_frame_head(rest, head) == m2b::zmtp::Parse::Ok && rest.size() - head.head_size >= head.size) {
        std::string_view body = rest.substr(head.head_size, head.size);
        std::string_view type;
        m2b::zmtp::command_name(body);
        m2b::zmtp::ready_socket_type(body, type);
        m2b::zmtp::pong_for(body);
        rest.remove_prefix(head.head_size + body.size());
    }
}

std::string push_handshake() {
    std::string g = m2b::zmtp::greeting();
    g[32] = 1;  // as-server, as Mongrel2 binds
    return g + m2b::zmtp::ready_command("PUSH");
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
    codec(in);

    static int counter = 0;
    std::string name = "@m2b-fuzz-zmtp-" + std::to_string(getpid()) + "-" + std::to_string(counter++);
    int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    std::memcpy(un.sun_path, name.data(), name.size());
    un.sun_path[0] = '\0';
    auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size());
    if (bind(listener, reinterpret_cast<sockaddr*>(&un), len) != 0 || listen(listener, 1) != 0) abort();

    m2b::log::set_level(m2b::log::Level::Error);
    m2b::Loop loop;
    size_t bytes = 0;
    {
        m2b::ZmtpConnection conn(loop, "ipc://" + name, "PULL", {"PUSH"});
        conn.set_callbacks([&](std::string_view m) { bytes += m.size(); }, nullptr, nullptr);
        conn.start();
        int peer = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
        if (peer < 0) abort();
        std::string wire = (data[0] & 1) ? std::string(in) : push_handshake() + std::string(in);
        // Written from here while the loop reads: the socket buffer is smaller than a large input.
        size_t sent = 0;
        for (int turn = 0; turn < 10000 && (sent < wire.size() || turn < 4); ++turn) {
            if (sent < wire.size()) {
                ssize_t n = send(peer, wire.data() + sent, wire.size() - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (n > 0) sent += static_cast<size_t>(n);
                else if (conn.state() == m2b::ZmtpConnection::State::Waiting) break;  // it gave up on us
            }
            loop.run_once(0);
        }
        close(peer);
        for (int turn = 0; turn < 4; ++turn) loop.run_once(0);
        if (bytes > wire.size()) abort();  // never more than was sent
    }
    close(listener);
    return 0;
}
