# Helpers shared by the benchmark scripts (sourced, not run).

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# CPU seconds (user+system) used so far by the processes whose command line matches $1.
cpu() {
  total=0
  for pid in $(pgrep -f "$1"); do
    t=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)
    total=$((total + t))
  done
  echo "$total"
}
# BACKEND_PATTERN names the backend processes (php-fpm, fcgiwrap...).
snapshot() { echo "$(cpu "mongrel2 config") $(cpu build-bench/m2bridge) $(cpu "${BACKEND_PATTERN:-php-fpm}") $(cpu "nginx")"; }

measure() {  # name url var
  wrk -t 1 -c 8 -d 2 "$2" > /dev/null 2>&1  # warm-up
  before=$(snapshot)
  out=$(wrk -t 2 -c "$CONNS" -d "$DURATION" --latency "$2")
  after=$(snapshot)
  rps=$(echo "$out" | awk '/^Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  errors=$(echo "$out" | awk '/Non-2xx|Socket errors/' | tr '\n' ' ')
  printf '%-36s %10s req/s  p50 %8s  p99 %8s %s\n' "$1" "$rps" "$p50" "$p99" "$errors"
  echo "$before $after $DURATION" | awk '{ printf "    cpu seconds per wall second: mongrel2 %.2f  m2bridge %.2f  backend %.2f  nginx %.2f\n", ($5-$1)/100/$9, ($6-$2)/100/$9, ($7-$3)/100/$9, ($8-$4)/100/$9 }'
  eval "RPS_$3=$rps"
}
