#!/usr/bin/env bash
# Fetches the appliance's host kernel: Debian's maintained generic kernel
# (linux-image-amd64), unpacked with its module tree and a depmod index,
# cached outside the git tree by package version. Prints the directory.
#
# To use another kernel, point PADDOCK_HOST_KERNEL at a directory with the
# same shape: vmlinuz, kernel-release, and lib/modules/<release>/ with a
# modules.dep (run `depmod -b DIR RELEASE`).
set -euo pipefail

if [ -n "${PADDOCK_HOST_KERNEL:-}" ]; then
    echo "$PADDOCK_HOST_KERNEL"
    exit 0
fi
cache_root=${PADDOCK_CACHE:-$HOME/.cache/paddock}
meta=linux-image-amd64
version=$(apt-cache policy "$meta" | sed -n 's/^ *Candidate: *//p')
if [ -z "$version" ] || [ "$version" = "(none)" ]; then
    echo "host-kernel: apt knows no $meta; run 'apt-get update'" >&2
    exit 1
fi
out="$cache_root/host-kernel/$version"
if [ -f "$out/vmlinuz" ] && [ -f "$out/kernel-release" ]; then
    echo "$out"
    exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/paddock-hostk.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
apt-get download "$meta=$version" >&2 2>/dev/null || apt-get download "$meta" >&2
image_pkg=$(dpkg-deb -f ./"$meta"_*.deb Depends | tr ',' '\n' | sed -n 's/^ *\(linux-image-[^ ]*\).*/\1/p' | head -n1)
apt-get download "$image_pkg" >&2
dpkg-deb -x ./"$image_pkg"_*.deb root
kver=$(ls root/lib/modules)
rm -rf "$out.tmp"
mkdir -p "$out.tmp/lib/modules"
cp root/boot/vmlinuz-"$kver" "$out.tmp/vmlinuz"
cp -a root/lib/modules/"$kver" "$out.tmp/lib/modules/"
depmod -b "$out.tmp" "$kver"
echo "$kver" > "$out.tmp/kernel-release"
echo "$version" > "$out.tmp/package-version"
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$out"
