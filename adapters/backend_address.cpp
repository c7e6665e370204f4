#include "adapters/backend_address.h"

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdexcept>
#include <sys/un.h>
#include <unistd.h>

namespace m2b {

std::string parse_backend_address(const std::string& address, sockaddr_storage& out, socklen_t& len) {
    std::memset(&out, 0, sizeof out);
    if (address.rfind("unix:", 0) == 0) {
        std::string path = address.substr(5);
        auto* un = reinterpret_cast<sockaddr_un*>(&out);
        if (path.empty() || path.size() >= sizeof un->sun_path) return "unix socket path is empty or too long";
        un->sun_family = AF_UNIX;
        std::memcpy(un->sun_path, path.c_str(), path.size() + 1);
        len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
        return "";
    }
    std::string host, port;
    if (!address.empty() && address[0] == '[') {
        size_t close = address.find(']');
        if (close == std::string::npos || close + 1 >= address.size() || address[close + 1] != ':')
            return "expected [v6-address]:port";
        host = address.substr(1, close - 1);
        port = address.substr(close + 2);
    } else {
        size_t colon = address.rfind(':');
        if (colon == std::string::npos) return "expected unix:/path or HOST:PORT";
        host = address.substr(0, colon);
        port = address.substr(colon + 1);
    }
    if (host.empty() || port.empty()) return "expected unix:/path or HOST:PORT";
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* res = nullptr;
    // Resolved once at start-up, never on the loop.
    int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
    if (rc != 0 || !res) return std::string("cannot resolve: ") + gai_strerror(rc);
    std::memcpy(&out, res->ai_addr, res->ai_addrlen);
    len = res->ai_addrlen;
    freeaddrinfo(res);
    return "";
}

BackendAddress::BackendAddress(std::string address) : text_(std::move(address)) {
    std::string error = parse_backend_address(text_, addr_, len_);
    if (!error.empty()) throw std::invalid_argument(text_ + ": " + error);
}

int BackendAddress::connect(int& error) const {
    int fd = ::socket(addr_.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        error = errno;
        return -1;
    }
    if (addr_.ss_family != AF_UNIX) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr_), len_) == 0) {
        error = 0;
        return fd;
    }
    error = errno;
    if (error == EINPROGRESS) return fd;
    ::close(fd);
    return -1;
}

}  // namespace m2b
