#!/usr/bin/env bash
# Installs what building and testing Paddock needs, from Debian's packages.
# Idempotent: installs only what is missing.
set -euo pipefail

packages=(
    qemu-system-x86   # the L1 for nested KVM, and QEMU microvm for benchmarks
    busybox-static    # shells and tools inside test VMs
    linux-source-6.12 # the workspace kernel's source
    build-essential flex bison bc libelf-dev libssl-dev dwarves xz-utils cpio
    e2fsprogs         # test disk images built without mounting
    debootstrap erofs-utils # workspace templates
    kmod zstd         # the appliance image: module dependencies, initramfs compression
    systemd-boot-efi  # the UEFI stub the unified kernel image is built on, and systemd-boot (picks a slot)
    systemd           # systemd-measure: the check of our own PCR 11 prediction
    ovmf swtpm swtpm-tools # UEFI firmware and a TPM 2.0 for booting the appliance in QEMU
    sbsigntool        # the Secure Boot test signs the boot manager and the slots' UKIs
    curl openssl      # the appliance tests talk HTTPS to its API
    iproute2          # the network tests: namespaces, taps, neighbours (ip)
    tmux              # the terminal test: paddock shell in a real terminal
    chromium          # the web console's tests run in a real browser
)
# schemathesis (checks docs/openapi.yaml) runs in a venv: Debian's python3
# needs python3-venv for that; a python3 of its own (pyenv) has venv built in.
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    packages+=(python3 python3-venv)
fi
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}" >&2
    if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
    $sudo apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi
