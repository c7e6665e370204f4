// Mongrel2's async uploads (mongrel2-protocol.md §2.8): a large or chunked
// body is written to a temp file; the handler gets a message with
// x-mongrel2-upload-start, later one with -start and -done naming the same
// file. Clients can forge both headers, so a done message counts only when
// start == done, the body is empty, a body was declared and the path fits the
// configured store; the handler also checks that the same connection announced
// it, and the transaction that the file is a plain file of the store's owner.
#pragma once

#include <string>

#include "bridge/m2_request.h"

namespace m2b {

struct UploadCheck {
    enum class State {
        None,      // no upload headers: a normal request
        Started,   // the first message of a real upload: wait for -done
        Done,      // the upload finished: `file` is the body
        Forged,    // headers a client sent: ignore them and serve normally
        Refused,   // looks real, but no --upload-store, or outside it: 413 and close
    };
    State state = State::None;
    std::string file;      // Started / Done: the path m2bridge opens
    std::string reported;  // Started / Done / Refused: the path as Mongrel2 wrote it
    bool finished = false; // the message carries -done == -start
    std::string why;       // Forged / Refused: what was wrong, for the log
};

// `store_template` is the --upload-store value (canonical dir + "/" + name
// ending in XXXXXX), or empty.
UploadCheck check_upload(const Request& request, const std::string& store_template);

// The file m2bridge should open for a path Mongrel2 reported, or "" when the
// path does not fit the template (it may be relative to Mongrel2's chroot or
// working directory, so only its last components are compared).
std::string upload_path_in_store(const std::string& reported, const std::string& store_template);

}  // namespace m2b
