#!/bin/sh
# Turns one benchmark run's figures (the lines bench/lib.sh's measure appends to $FIGURES)
# into a Markdown table and an SVG chart, so the two never drift from each other or the run.
# Usage: bench/report.sh NAME FIGURES SUMMARY "COMMAND"
# writes docs/figures/NAME.md and NAME.svg (BENCH_REPORT_DIR elsewhere). SUMMARY holds the run's
# printed ratios, one per line. A line with 0 connections is a ceiling with no CPU figures.
set -eu
NAME=$1
FIGURES=$2
SUMMARY=$3
COMMAND=$4
OUT=${BENCH_REPORT_DIR:-docs/figures}
mkdir -p "$OUT"
TABLE="$OUT/$NAME.md"
CHART="$OUT/$NAME.svg"

# Before the table is written: writing it changes a tracked file.
COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' with local changes')"
{
  echo "<!-- Written by bench/report.sh from one run of \`$COMMAND\`; do not edit by hand. -->"
  echo "One run of \`$COMMAND\`, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores,"
  echo "commit $COMMIT."
  echo "CPU is µs per request of each process (user + system), over the requests wrk completed."
  echo
  echo "| path | connections | req/s | p50 µs | p99 µs | mongrel2 | m2bridge | backend | nginx | null handler or floor relay |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  awk -F '\t' '{
    if ($2 == 0) { printf "| %s | – | %s | – | – | – | – | – | – | – |\n", $1, $3; next }
    printf "| %s | %s | %s | %s | %s |", $1, $2, $3, $4, $5
    for (i = 6; i <= 10; i++) printf " %s |", ($i == 0 ? "–" : $i)
    printf "\n" }' "$FIGURES"
  echo
  sed 's/^/- /' "$SUMMARY"
  echo
  echo "![throughput and CPU per request]($NAME.svg)"
} > "$TABLE"

# The chart: the loaded runs only (latency at one connection is in the table).
DATA=$(mktemp)
trap 'rm -f "$DATA"' EXIT
awk -F '\t' '$2 != 1 { printf "\"%s\"\t%s\t%s\t%s\t%s\t%s\t%s\n", $1, $3, $6, $7, $8, $9, $10 }' "$FIGURES" > "$DATA"
BARS=$(wc -l < "$DATA")
gnuplot <<GNUPLOT
set terminal svg size 1100,560 dynamic font "sans,11"
set output "$CHART"
set datafile separator "\t"
set multiplot layout 1,2 title "$COMMAND — $(date -u '+%Y-%m-%d')"
set style data histograms
set style fill solid 0.8 border -1
set boxwidth 0.8
set xtics rotate by -35 left noenhanced
set grid ytics
set bmargin 12
set xrange [-0.6:$BARS - 0.4]
set key top right noenhanced
set title "throughput (req/s)"
set yrange [0:*]
set style histogram clustered gap 1
unset key
plot "$DATA" using 2:xtic(1) linecolor rgb "#4477aa"
set key top right
set title "CPU µs per request, by process"
set style histogram rowstacked
plot "$DATA" using 3:xtic(1) title "mongrel2" linecolor rgb "#cc6677", \
     "" using 4 title "m2bridge" linecolor rgb "#4477aa", \
     "" using 5 title "backend" linecolor rgb "#ddcc77", \
     "" using 6 title "nginx" linecolor rgb "#117733", \
     "" using 7 title "null handler or floor relay" linecolor rgb "#888888"
unset multiplot
GNUPLOT
echo "report: $TABLE, $CHART"
