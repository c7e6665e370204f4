// How an exchange ends and tells its sink it failed when telling it now would
// re-enter the caller: inside Gateway::start (the caller does not hold the
// handle yet) or inside one of the sink's own callbacks.
// The sink hears of it on the next loop turn, unless the exchange has left
// Stage::Reporting by then (cancelled) or is gone.
#pragma once
#include <string>
#include <utility>

#include "adapters/gateway.h"
#include "base/life_token.h"
#include "base/loop.h"

namespace m2b {

// `Stage` is the exchange's own state enum; it needs Reporting and Done.
// `stop` ends the exchange's I/O (and its process); it runs once the stage
// says Reporting, so a callback it might cause cannot report a second time.
template <typename Stage, typename Stop>
void report_failure_next_turn(Loop& loop, const LifeToken& life, Stage& stage, ExchangeSink& sink,
                              BackendFailure kind, std::string why, Stop stop) {
    stage = Stage::Reporting;
    stop();
    loop.post(life.guard([&stage, &sink, kind, why = std::move(why)] {
        if (stage != Stage::Reporting) return;
        stage = Stage::Done;
        sink.on_failure(kind, why);
    }));
}

}  // namespace m2b
