// A response that starts with an HTTP status line ("HTTP/1.1 404 Not Found"),
// as uWSGI answers on its uwsgi and SCGI sockets, turned into the CGI form the
// response parser reads ("Status: 404 Not Found"). A response that starts any
// other way is a CGI response already and passes unchanged, as nginx's
// scgi_pass and uwsgi_pass accept both.
#pragma once

#include <string>
#include <string_view>

namespace m2b {

class StatusLineToCgi {
public:
    enum class State {
        Deciding,  // fewer bytes than "HTTP/" so far, all matching it
        InLine,    // inside a status line, waiting for its end
        Passing,   // everything from here on passes unchanged
        Error,     // a malformed status line: error() says what
    };
    static constexpr size_t kMaxLine = 8 * 1024;

    // The bytes to hand on for `bytes` (possibly none yet, while the status
    // line is incomplete). Valid until the next call.
    std::string_view feed(std::string_view bytes);
    State state() const { return state_; }
    const std::string& error() const { return error_; }

private:
    std::string_view convert_line(std::string_view rest);

    State state_ = State::Deciding;
    std::string held_;  // the start of the response while deciding or inside the line
    std::string out_;
    std::string error_;
};

}  // namespace m2b
