// Request paths into SCRIPT_NAME / PATH_INFO (no directory: pure string work).
// Nothing resolved may climb out with '..' or carry a control byte.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "adapters/script_path.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string path = "/app/" + std::string(reinterpret_cast<const char*>(data), size);
    m2b::ScriptOptions options;
    auto target = m2b::resolve_script(options, "/app/", path);
    if (target.status == 0) {
        std::string all = target.script_name + target.path_info;
        if (all.find("/../") != std::string::npos || all.ends_with("/..")) std::abort();
        for (char c : all)
            if (static_cast<unsigned char>(c) < 0x20) std::abort();
    }
    return 0;
}
