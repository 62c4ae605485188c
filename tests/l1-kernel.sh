#!/usr/bin/env bash
# Fetches the harness's L1 kernel (Debian's cloud kernel) and the KVM modules
# it needs, cached outside the git tree by package version. Prints the directory.
set -euo pipefail

. "$(dirname "$0")/../scripts/lib/debian-kernel.sh"
cache_root=${PADDOCK_CACHE:-$HOME/.cache/paddock}
meta=linux-image-cloud-amd64
version=$(debian_kernel_version "$meta")
out="$cache_root/l1-kernel/$version"
if [ -f "$out/vmlinuz" ] && [ -f "$out/modules/kvm-amd.ko" ]; then
    echo "$out"
    exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/paddock-l1.XXXXXX")
trap 'rm -rf "$work"' EXIT
kver=$(debian_kernel_unpack "$meta" "$version" "$work")
cd "$work"
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
