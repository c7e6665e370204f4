#!/bin/sh
# Installs everything m2bridge needs to build, run its demo and run its tests,
# from Debian bookworm packages by name. Safe to run again: apt-get skips what is there.
set -eu
export DEBIAN_FRONTEND=noninteractive

PACKAGES="
  build-essential g++ meson ninja-build pkg-config
  libzmq3-dev cppzmq-dev libfcgi-dev libsimdjson-dev doctest-dev
  libtomlplusplus-dev libsystemd-dev libcli11-dev
  mongrel2-core php-fpm php-cgi curl python3 perl procps uwsgi-core uwsgi-plugin-python3
  clang libclang-rt-14-dev python3-zmq
  debhelper dpkg-dev lintian chromium chromium-driver python3-selenium fakeroot
"
# Only for bench/: nginx and wrk as the baseline, gnuplot for the charts.
BENCH_PACKAGES="nginx-light wrk fcgiwrap gnuplot-nox"

missing=""
for p in $PACKAGES ${WITH_BENCH:+$BENCH_PACKAGES}; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing
fi
# Debian's php-fpm package enables a system service; tests start their own pools.
