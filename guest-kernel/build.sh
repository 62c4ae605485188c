#!/usr/bin/env bash
# Builds the Paddock workspace kernel from Debian's linux-source-6.12 and caches
# it outside the git tree, keyed by the config fragment, this script and the
# exact source package version. Prints the cache directory on stdout.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache_root=${PADDOCK_CACHE:-$HOME/.cache/paddock}
tarball=/usr/src/linux-source-6.12.tar.xz

if [ ! -f "$tarball" ]; then
    echo "guest-kernel: $tarball missing; run 'just deps' (apt-get install linux-source-6.12)" >&2
    exit 1
fi
src_version=$(dpkg-query -W -f='${Version}' linux-source-6.12)
key=$( { cat "$here/paddock.config" "$here/build.sh"; echo "$src_version"; } | sha256sum | cut -c1-16)
out="$cache_root/guest-kernel/$key"

if [ -f "$out/vmlinux" ] && [ -f "$out/bzImage" ]; then
    echo "$out"
    exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/paddock-kernel.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "guest-kernel: building $src_version (key $key) in $work" >&2
tar -C "$work" -xf "$tarball"
cd "$work/linux-source-6.12"
make -s tinyconfig >&2
scripts/kconfig/merge_config.sh -m .config "$here/paddock.config" >/dev/null
make -s olddefconfig >&2

# A requested option that Kconfig dropped (a missing dependency) is a build
# error, not a silently smaller kernel.
missing=0
while IFS= read -r line; do
    case "$line" in
    CONFIG_*=*)
        if ! grep -qx -- "$line" .config; then
            echo "guest-kernel: $line did not survive olddefconfig" >&2
            missing=1
        fi
        ;;
    "# CONFIG_"*" is not set")
        opt=${line#\# }
        opt=${opt%% *}
        if grep -q -- "^$opt=" .config; then
            echo "guest-kernel: $opt is still enabled (something selects it)" >&2
            missing=1
        fi
        ;;
    esac
done < "$here/paddock.config"
[ "$missing" = 0 ] || exit 1

make -s -j"$(nproc)" KBUILD_BUILD_TIMESTAMP="@0" KBUILD_BUILD_USER=paddock KBUILD_BUILD_HOST=paddock vmlinux bzImage >&2

mkdir -p "$out.tmp"
cp vmlinux "$out.tmp/vmlinux"
cp arch/x86/boot/bzImage "$out.tmp/bzImage"
cp .config "$out.tmp/config"
echo "$src_version" > "$out.tmp/source-version"
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$out"
