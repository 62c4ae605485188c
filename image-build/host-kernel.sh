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
. "$(dirname "$0")/../scripts/lib/debian-kernel.sh"
cache_root=${PADDOCK_CACHE:-$HOME/.cache/paddock}
meta=linux-image-amd64
version=$(debian_kernel_version "$meta")
out="$cache_root/host-kernel/$version"
if [ -f "$out/vmlinuz" ] && [ -f "$out/kernel-release" ]; then
    echo "$out"
    exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/paddock-hostk.XXXXXX")
trap 'rm -rf "$work"' EXIT
kver=$(debian_kernel_unpack "$meta" "$version" "$work")
cd "$work"
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
