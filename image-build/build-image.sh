#!/usr/bin/env bash
# Builds the appliance image from its parts, deterministically (same inputs,
# same bytes; timestamps and GUIDs come from SOURCE_DATE_EPOCH).
#
#   build-image.sh OUT_DIR [--esp-config FILE]
#
# Inputs come from the environment (the Justfile sets them):
#   PADDOCK_STATIC_BIN    static paddock-init, paddock-vmm, paddock-agent, paddock-image
#   PADDOCK_GUEST_KERNEL  the workspace kernel (vmlinux)
#   PADDOCK_TEMPLATE      the default workspace template (erofs)
#   PADDOCK_HOST_KERNEL   the host kernel (image-build/host-kernel.sh)
#   SOURCE_DATE_EPOCH     optional; defaults to the last commit's time
#   PADDOCK_IMAGE_KEY     the image key (P-256, PKCS#8 DER) that signs each
#                         image's PCR 11 policy for the disk keys
#                         (docs/keys.md); without it, a development key made
#                         once in $PADDOCK_CACHE/image-key, with a warning
#   PADDOCK_UPDATE_KEY    the update key (Ed25519, PKCS#8 DER) whose bundles
#                         this image takes (its public half goes in); without
#                         it, a development key in $PADDOCK_CACHE/update-key
#
# Outputs in OUT_DIR: paddock.img (GPT disk for dd: systemd-boot, the UKI in
# slot A, slot B empty), paddock.efi (UKI), pcr-signature.json (its PCR 11
# signed by the image key), vmlinuz + initramfs.cpio.zst + cmdline (QEMU
# direct boot), contents.txt.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build-image.sh OUT_DIR [--esp-config FILE]}
shift
esp_config=
while [ $# -gt 0 ]; do
    case "$1" in
        --esp-config) esp_config=${2:?--esp-config needs a file}; shift 2 ;;
        *) echo "build-image: unknown argument $1" >&2; exit 2 ;;
    esac
done
: "${PADDOCK_STATIC_BIN:?}" "${PADDOCK_GUEST_KERNEL:?}" "${PADDOCK_TEMPLATE:?}" "${PADDOCK_HOST_KERNEL:?}"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$here" log -1 --format=%ct 2>/dev/null || echo 0)}
tool="$PADDOCK_STATIC_BIN/paddock-image"
hk="$PADDOCK_HOST_KERNEL"
kver=$(cat "$hk/kernel-release")
stub=/usr/lib/systemd/boot/efi/linuxx64.efi.stub
# The boot manager that picks a slot (docs/updates.md).
boot_loader=/usr/lib/systemd/boot/efi/systemd-bootx64.efi
# Serial first for the log, the screen last so /dev/console is the monitor
# on real hardware; host-init writes its status to every active console.
cmdline="console=ttyS0,115200 console=tty0 quiet loglevel=3 panic=10"

work=$(mktemp -d "${TMPDIR:-/tmp}/paddock-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
stage="$work/root"
mkdir -p "$stage"/{usr/lib/paddock/guest,usr/sbin,etc,lib/modules,dev,proc,sys,run,tmp,data}

# The test suite's probes go into the images configured for them (which
# need them) and into no other: paddock-init says what it was built with
# (`just static` builds it without, `just static-test` with).
has_probes=$("$PADDOCK_STATIC_BIN/paddock-init" build-info | sed -n 's/^test-probes //p')
wants_probes=no
if [ -n "$esp_config" ] && grep -Eq '"test_probes"[[:space:]]*:[[:space:]]*true' "$esp_config"; then
    wants_probes=yes
fi
if [ "$has_probes" != "$wants_probes" ]; then
    echo "build-image: $PADDOCK_STATIC_BIN/paddock-init has test-probes=${has_probes:-unknown}, this image needs $wants_probes (just static, or just static-test for a test image)" >&2
    exit 1
fi
# A signing key: the release's ($1, from the environment), or a development
# key made once in the cache under $2 by `paddock-image $3`, said on stderr.
signing_key() {
    local given=$1 name=$2 make=$3 key
    if [ -n "$given" ]; then
        echo "$given"
        return
    fi
    key=${PADDOCK_CACHE:-$HOME/.cache/paddock}/$name/development.pk8
    if [ ! -f "$key" ]; then
        mkdir -p "$(dirname "$key")"
        "$tool" "$make" --out "$key" --public "$key.pub"
    fi
    echo "build-image: the development $name $key signs this build (set the release's key for a release; docs/keys.md, docs/updates.md)" >&2
    echo "$key"
}
# The image key: its public half goes into the image (the disk keys are
# sealed to what it signs), its private half signs this image's PCR 11
# below and never goes anywhere near the image.
image_key=$(signing_key "${PADDOCK_IMAGE_KEY:-}" image-key pcr-key)
"$tool" pcr-public --key "$image_key" --out "$stage/usr/lib/paddock/pcr-policy.pub"
# The update key: the box takes only bundles it signed (docs/updates.md).
update_key=$(signing_key "${PADDOCK_UPDATE_KEY:-}" update-key update-key)
"$tool" update-public --key "$update_key" --out "$stage/usr/lib/paddock/update.pub"
install -m 0755 "$PADDOCK_STATIC_BIN/paddock-init" "$stage/init"
install -m 0755 "$PADDOCK_STATIC_BIN/paddock-vmm" "$stage/usr/lib/paddock/paddock-vmm"
install -m 0644 "$PADDOCK_GUEST_KERNEL/vmlinux" "$stage/usr/lib/paddock/guest/vmlinux"

# The workspace's initramfs: the guest agent as /init, nothing else.
mkdir -p "$work/agent-root"
install -m 0755 "$PADDOCK_STATIC_BIN/paddock-agent" "$work/agent-root/init"
"$tool" initramfs --root "$work/agent-root" --out "$stage/usr/lib/paddock/guest/agent.cpio"

# Modules with their dependencies, in load order, each once.
: > "$work/load.list"
grep -v '^\s*#' "$here/host-modules.list" | awk 'NF{print $1}' | while read -r m; do
    modprobe -d "$hk" -S "$kver" --show-depends "$m" 2>/dev/null || {
        echo "build-image: module $m is not in kernel $kver" >&2; exit 1; }
done | awk '$1 == "insmod" {print $2}' | sed "s|^$hk||; s|^/\./|/|" | awk '!seen[$0]++' > "$work/load.list"
while read -r ko; do
    mkdir -p "$stage/$(dirname "$ko")"
    cp "$hk/$ko" "$stage/$ko"
done < "$work/load.list"
cp "$work/load.list" "$stage/lib/modules/load.list"

# e2fsprogs for the data partition, with exactly the libraries they link.
for bin in /usr/sbin/mke2fs /usr/sbin/resize2fs; do
    install -m 0755 "$bin" "$stage$bin"
    ldd "$bin" | awk '/=>/ {print $3} /^[[:space:]]*\/lib/ {print $1}' | while read -r lib; do
        [ -f "$lib" ] || continue
        mkdir -p "$stage$(dirname "$lib")"
        cp -L "$lib" "$stage$lib"
    done
done
cp /etc/mke2fs.conf "$stage/etc/mke2fs.conf"

version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$here/../Cargo.toml" | head -n1)
cat > "$stage/etc/os-release" <<OSREL
NAME="Paddock"
ID=paddock
PRETTY_NAME="Paddock $version"
VERSION_ID=$version
HOME_URL="https://paddock.invalid/"
OSREL
find "$stage" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

"$tool" initramfs --root "$stage" --out "$work/initramfs.cpio"
zstd -q -19 -T1 --no-progress -f "$work/initramfs.cpio" -o "$work/initramfs.cpio.zst"
printf '%s' "$cmdline" > "$work/cmdline"

# The unified kernel image: systemd's stub with the kernel, initramfs,
# command line and os-release as PE sections placed after the stub's own.
align=$((0x$(objdump -p "$stub" | awk '/SectionAlignment/ {print $2}')))
end=0
while read -r _ _ size vma _; do
    e=$((0x$vma + 0x$size))
    [ "$e" -gt "$end" ] && end=$e
done < <(objdump -h -w "$stub" | awk 'NR>5 && $3 ~ /^[0-9a-f]+$/')
next_at() { echo $(( ($1 + align - 1) / align * align )); }
osrel_at=$(next_at "$end")
cmdline_at=$(next_at $((osrel_at + $(stat -c%s "$stage/etc/os-release"))))
initrd_at=$(next_at $((cmdline_at + $(stat -c%s "$work/cmdline"))))
linux_at=$(next_at $((initrd_at + $(stat -c%s "$work/initramfs.cpio.zst"))))
objcopy \
    --add-section .osrel="$stage/etc/os-release" --change-section-vma .osrel="$(printf 0x%x "$osrel_at")" \
    --add-section .cmdline="$work/cmdline" --change-section-vma .cmdline="$(printf 0x%x "$cmdline_at")" \
    --add-section .initrd="$work/initramfs.cpio.zst" --change-section-vma .initrd="$(printf 0x%x "$initrd_at")" \
    --add-section .linux="$hk/vmlinuz" --change-section-vma .linux="$(printf 0x%x "$linux_at")" \
    "$stub" "$work/paddock.efi"
# objcopy stamps the PE header with the current time (and checksums it):
# use the build's epoch, and no checksum (firmware ignores it; sbsign
# recomputes it when signing).
pe_at=$(od -An -tu4 -j60 -N4 "$work/paddock.efi" | tr -d ' ')
e=$SOURCE_DATE_EPOCH
printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $((e & 255)) $((e >> 8 & 255)) $((e >> 16 & 255)) $((e >> 24 & 255)))" |
    dd of="$work/paddock.efi" bs=1 seek=$((pe_at + 8)) conv=notrunc status=none
printf '\x00\x00\x00\x00' | dd of="$work/paddock.efi" bs=1 seek=$((pe_at + 24 + 64)) conv=notrunc status=none

version_name=$(sed -n 's/^VERSION_ID=//p' "$stage/etc/os-release")
"$tool" pcr-sign --uki "$work/paddock.efi" --key "$image_key" --image "$version_name" --out "$work/pcr-signature.json"
disk_args=(--uki "$work/paddock.efi" --boot-loader "$boot_loader" --template "$PADDOCK_TEMPLATE"
    --out "$work/paddock.img" --pcr-signature "$work/pcr-signature.json")
[ -n "$esp_config" ] && disk_args+=(--esp-config "$esp_config")
"$tool" disk "${disk_args[@]}"
"$tool" list "$work/paddock.img" --check-no-shell > "$work/contents.txt"

mkdir -p "$out"
cp "$work/paddock.img" "$work/paddock.efi" "$work/initramfs.cpio.zst" "$work/cmdline" "$work/contents.txt" \
    "$work/pcr-signature.json" "$out/"
cp "$hk/vmlinuz" "$out/vmlinuz"
if [ -n "$esp_config" ]; then cp "$esp_config" "$out/esp-config.json"; else rm -f "$out/esp-config.json"; fi
echo "build-image: $out/paddock.img ($(du -h --apparent-size "$out/paddock.img" | cut -f1)), UKI $(du -h "$out/paddock.efi" | cut -f1), initramfs $(du -h "$out/initramfs.cpio.zst" | cut -f1)" >&2
