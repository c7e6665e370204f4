#!/bin/sh
# Builds the m2bridge .deb from the working tree and puts it in OUTDIR.
#   packaging/build-deb.sh OUTDIR
# Debian wants debian/ at the source root, so the tree (files git tracks plus
# untracked ones it does not ignore; build directories are ignored) is copied to a
# temporary directory, packaging/debian becomes its debian/, and dpkg-buildpackage
# builds there: the working tree is left untouched.
set -eu

if [ $# -ne 1 ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
mkdir -p "$1"
outdir=$(cd "$1" && pwd)
source_root=$(cd "$(dirname "$0")/.." && pwd)

work=$(mktemp -d "${TMPDIR:-/tmp}/m2bridge-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

version=$(dpkg-parsechangelog -l "$source_root/packaging/debian/changelog" -S Version)
src="$work/m2bridge-${version%-*}"
mkdir "$src"
# -z: any byte in a file name; --exclude-standard: .gitignore (build*/) applies.
# --ignore-failed-read: a tracked file someone has just deleted is skipped.
(cd "$source_root" && git ls-files -z -co --exclude-standard) |
    tar -C "$source_root" --null --no-recursion --ignore-failed-read -T - -cf - |
    tar -C "$src" -xf -
rm -rf "$src/debian"
cp -a "$source_root/packaging/debian" "$src/debian"

(
    cd "$src"
    DEB_BUILD_OPTIONS="${DEB_BUILD_OPTIONS:-nocheck parallel=2}" dpkg-buildpackage -us -uc -b
) >"$work/build.log" 2>&1 || {
    tail -n 60 "$work/build.log" >&2
    echo "$0: dpkg-buildpackage failed (last lines above)" >&2
    exit 1
}
mv "$work"/*.deb "$outdir"/
ls "$outdir"/*.deb
