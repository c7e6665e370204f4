// Where a socket backend listens ("unix:/path.sock", "HOST:PORT",
// "[v6]:PORT"), resolved once at start-up, and the non-blocking connect every
// socket backend (FastCGI, SCGI, uwsgi) starts a request with.
#pragma once

#include <string>
#include <sys/socket.h>

namespace m2b {

// Parses and resolves `address` (getaddrinfo: never call it on the loop).
// Empty string on success, else what is wrong.
std::string parse_backend_address(const std::string& address, sockaddr_storage& out, socklen_t& len);

class BackendAddress {
public:
    // Throws std::invalid_argument naming the address and what is wrong.
    explicit BackendAddress(std::string address);

    // A non-blocking socket with connect() in progress (error == EINPROGRESS)
    // or done (error == 0); -1 with `error` set when it failed at once.
    int connect(int& error) const;
    bool is_unix() const { return addr_.ss_family == AF_UNIX; }
    const std::string& text() const { return text_; }

private:
    std::string text_;
    sockaddr_storage addr_{};
    socklen_t len_ = 0;
};

}  // namespace m2b
