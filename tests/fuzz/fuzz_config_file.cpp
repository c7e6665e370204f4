// The TOML config reader: any text is a ServiceConfig or one ConfigError line
// that names the file, never a crash, and what it accepts checks again.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "bridge/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    try {
        m2b::ServiceConfig c = m2b::load_config_text(text, "fuzz.toml");
        if (c.handlers.empty()) std::abort();  // "nothing to run" must have been an error
        // What check prints must read back as the same config.
        m2b::ServiceConfig again = m2b::load_config_text(m2b::to_toml(c), "fuzz.toml");
        if (m2b::to_toml(again) != m2b::to_toml(c)) std::abort();
    } catch (const m2b::ConfigError& e) {
        std::string_view what = e.what();
        if (!what.starts_with("fuzz.toml") || what.find('\n') != std::string_view::npos) std::abort();
    }
    return 0;
}
