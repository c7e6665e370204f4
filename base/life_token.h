// Callbacks an exchange schedules on the loop (a failure reported later, a
// child's exit) must not run after the exchange is gone: guard() wraps them
// so they do nothing once the token's owner has been destroyed.
#pragma once

#include <memory>
#include <utility>

namespace m2b {

class LifeToken {
public:
    template <typename F>
    auto guard(F f) const {
        std::weak_ptr<const char> alive = token_;
        return [alive, f](auto&&... args) mutable {
            if (alive.lock()) f(std::forward<decltype(args)>(args)...);
        };
    }

private:
    std::shared_ptr<const char> token_ = std::make_shared<const char>(0);
};

}  // namespace m2b
