#!/usr/bin/env bash
# Fetches the harness's L1 kernel (Debian's cloud kernel) and the KVM modules
# it needs, cached outside the git tree by package version. Prints the directory.
set -euo pipefail

cache_root=${PADDOCK_CACHE:-$HOME/.cache/paddock}
meta=linux-image-cloud-amd64
version=$(apt-cache policy "$meta" | sed -n 's/^ *Candidate: *//p')
if [ -z "$version" ] || [ "$version" = "(none)" ]; then
    echo "l1-kernel: apt knows no $meta; run 'apt-get update'" >&2
    exit 1
fi
out="$cache_root/l1-kernel/$version"
if [ -f "$out/vmlinuz" ] && [ -f "$out/modules/kvm-amd.ko" ]; then
    echo "$out"
    exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/paddock-l1.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
# The meta package names the versioned image package it pulls in.
apt-get download "$meta=$version" >&2 2>/dev/null || apt-get download "$meta" >&2
image_pkg=$(dpkg-deb -f ./"$meta"_*.deb Depends | tr ',' '\n' | sed -n 's/^ *\(linux-image-[^ ]*\).*/\1/p' | head -n1)
apt-get download "$image_pkg" >&2
dpkg-deb -x ./"$image_pkg"_*.deb root
kver=$(ls root/lib/modules)
mkdir -p "$out.tmp/modules"
cp root/boot/vmlinuz-"$kver" "$out.tmp/vmlinuz"
for m in virt/lib/irqbypass arch/x86/kvm/kvm arch/x86/kvm/kvm-amd arch/x86/kvm/kvm-intel; do
    src=$(ls root/lib/modules/"$kver"/kernel/"$m".ko* | head -n1)
    case "$src" in
        *.xz) xz -dc "$src" > "$out.tmp/modules/$(basename "$m").ko" ;;
        *.zst) zstd -dc "$src" > "$out.tmp/modules/$(basename "$m").ko" ;;
        *) cp "$src" "$out.tmp/modules/$(basename "$m").ko" ;;
    esac
done
echo "$kver" > "$out.tmp/kernel-release"
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$out"
