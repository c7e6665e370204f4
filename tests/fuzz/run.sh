#!/bin/sh
# Builds each libFuzzer target with clang (ASan + UBSan) and runs it for a
# bounded time from its committed corpus. Usage: tests/fuzz/run.sh [SECONDS]
set -eu
SECONDS_EACH=${1:-10}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=${M2B_FUZZ_DIR:-$ROOT/build-fuzz}
CXX=${FUZZ_CXX:-clang++}
if ! command -v "$CXX" >/dev/null 2>&1; then
  echo "fuzz: $CXX not found, skipped"
  exit 0
fi
mkdir -p "$OUT"
CODEC="bridge/netstring.cpp bridge/json_headers.cpp bridge/m2_request.cpp bridge/m2_reply.cpp
  bridge/http_reply.cpp bridge/upload.cpp bridge/zmtp.cpp adapters/cgi_response.cpp bridge/cgi_env.cpp adapters/script_path.cpp
  adapters/fastcgi/record.cpp adapters/status_line.cpp adapters/stream/scgi.cpp adapters/stream/uwsgi.cpp
  adapters/request_body.cpp bridge/file_reply.cpp"
# The handler's message path, for fuzz_handler, and the ZMTP connection, for fuzz_zmtp.
CORE="base/loop.cpp base/log.cpp bridge/handler.cpp bridge/transaction.cpp bridge/reply_stream.cpp bridge/out_frame.cpp
  bridge/access_log.cpp bridge/file_body.cpp bridge/zmtp_connection.cpp"
# The config reader, for fuzz_config_file only.
CONFIG="bridge/config.cpp bridge/config_options.cpp bridge/config_file.cpp bridge/modes.cpp adapters/backend_address.cpp
  adapters/byte_pump.cpp adapters/fastcgi/client.cpp adapters/fastcgi/pool.cpp adapters/stream/gateway.cpp adapters/cgi/runner.cpp adapters/cgi/cgroup.cpp
  adapters/balancer.cpp"
# toml++ as the product links it: Debian's compiled library, not the header-only
# parser (whose debug assertions trip on input the library reports as an error).
FLAGS="-std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I$ROOT
  $(pkg-config --cflags tomlplusplus)"
failed=0
# Sources are compiled once (with fuzzer instrumentation, no main) and linked into the targets.
compile() {  # prints the object files
  for s in "$@"; do
    o="$OUT/$(echo "$s" | tr / _).o"
    # shellcheck disable=SC2086
    "$CXX" $FLAGS -c "$ROOT/$s" -o "$o" >&2 || exit 1
    printf '%s ' "$o"
  done
}
# shellcheck disable=SC2086
objs=$(compile $CODEC) || exit 1
# shellcheck disable=SC2086
core_objs=$(compile $CORE) || exit 1
# shellcheck disable=SC2086
config_objs=$(compile $CONFIG) || exit 1
metrics_objs=$(compile bridge/metrics.cpp) || exit 1
for target in fuzz_m2_message fuzz_json_headers fuzz_tnetstring fuzz_fastcgi_records fuzz_cgi_response fuzz_script_path \
              fuzz_handler fuzz_config_file fuzz_scrape_request fuzz_stream_response fuzz_zmtp; do
  extra=""
  [ "$target" = fuzz_handler ] && extra="$core_objs"
  [ "$target" = fuzz_zmtp ] && extra="$core_objs"
  [ "$target" = fuzz_config_file ] && extra="$core_objs $config_objs -ltomlplusplus"
  [ "$target" = fuzz_scrape_request ] && extra="$metrics_objs"
  # shellcheck disable=SC2086
  "$CXX" $FLAGS "$HERE/$target.cpp" $objs $extra -lsimdjson -o "$OUT/$target"
  work="$OUT/corpus-$target"
  mkdir -p "$work"
  cp "$HERE/corpus/$target/"* "$work/" 2>/dev/null || true
  if "$OUT/$target" -max_total_time="$SECONDS_EACH" -max_len=70000 -timeout=10 -rss_limit_mb=2048 \
       -print_final_stats=0 "$work" > "$OUT/$target.log" 2>&1; then
    echo "fuzz: $target ok ($(grep -c '' "$OUT/$target.log") log lines, $(ls "$work" | wc -l) corpus entries)"
  else
    echo "fuzz: $target FAILED; see $OUT/$target.log"
    tail -30 "$OUT/$target.log"
    failed=1
  fi
done
exit $failed
