#!/usr/bin/env bash
# Boots an appliance disk image in QEMU the way a server would: UEFI (OVMF),
# a TPM 2.0 (swtpm), the disk on virtio, one virtio NIC with the API port
# forwarded to localhost. KVM with nested virtualization when the host has
# a usable /dev/kvm, TCG with an emulated EPYC (which has SVM) otherwise.
#
#   boot-appliance.sh DISK STATE_DIR [--serial FILE] [--port N] [--accel kvm|tcg]
#                     [--kernel FILE --initrd FILE --append ARGS] [--no-tpm]
#                     [--forward HOSTPORT:APPLIANCEPORT]... [--tap IFNAME]
#                     [--secure-boot]
#
# --forward adds a localhost port forwarded to one of the appliance's (a
# published workspace port, say).
# --tap puts the NIC on an existing tap device instead of QEMU's user-mode
# network (no forwards then; the appliance's configuration gives it its
# address): a test's clients can then come from many addresses.
# --no-tpm boots without the TPM (its state stays in STATE_DIR untouched):
# what a box does whose TPM was removed or disabled.
# --secure-boot boots Debian's OVMF with Secure Boot on and its "snakeoil"
# test keys enrolled (/usr/share/ovmf/PkKek-1-snakeoil.{key,pem}: sign the
# boot manager and the UKIs with them; a new STATE_DIR takes those
# variables). Never for anything but tests: the key is public.
# --kernel/--initrd/--append boot a kernel directly (still through OVMF)
# instead of the disk's UKI: the benchmark compares both, and a stock kernel.
#
# STATE_DIR keeps the TPM state, the UEFI variables and the QMP socket
# (STATE_DIR/qmp.sock) between boots. QEMU runs in the foreground (exec).
set -euo pipefail

disk=${1:?usage: boot-appliance.sh DISK STATE_DIR [--serial FILE] [--port N] [--accel kvm|tcg]}
state=${2:?usage: boot-appliance.sh DISK STATE_DIR [--serial FILE] [--port N] [--accel kvm|tcg]}
shift 2
serial=mon:stdio
port=8443
accel=
direct=()
tpm=1
secure=0
forwards=
tap=
while [ $# -gt 0 ]; do
    case "$1" in
        --serial) serial="file:${2:?}"; shift 2 ;;
        --port) port=${2:?}; shift 2 ;;
        --accel) accel=${2:?}; shift 2 ;;
        --kernel) direct+=(-kernel "${2:?}"); shift 2 ;;
        --initrd) direct+=(-initrd "${2:?}"); shift 2 ;;
        --append) direct+=(-append "${2:?}"); shift 2 ;;
        --no-tpm) tpm=0; shift ;;
        --secure-boot) secure=1; shift ;;
        # The uplink on an existing tap device instead of QEMU's user-mode
        # network (a test's own namespace: clients from many addresses).
        --tap)
            tap=${2:?}
            [[ "$tap" =~ ^[A-Za-z0-9_.-]{1,15}$ ]] || { echo "boot-appliance: --tap wants an interface name" >&2; exit 2; }
            shift 2 ;;
        --forward)
            f=${2:?}
            [[ "$f" =~ ^[0-9]+:[0-9]+$ ]] || { echo "boot-appliance: --forward wants HOSTPORT:APPLIANCEPORT" >&2; exit 2; }
            forwards+=",hostfwd=tcp:127.0.0.1:${f%%:*}-:${f##*:}"; shift 2 ;;
        *) echo "boot-appliance: unknown argument $1" >&2; exit 2 ;;
    esac
done
code=/usr/share/OVMF/OVMF_CODE_4M.fd
vars_template=/usr/share/OVMF/OVMF_VARS_4M.fd
machine=(-M q35)
if [ "$secure" = 1 ]; then
    # The Secure Boot build keeps its variables in SMM: q35 with SMM, and
    # the variable flash only SMM may write.
    code=/usr/share/OVMF/OVMF_CODE_4M.snakeoil.fd
    vars_template=/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd
    machine=(-M q35,smm=on -global driver=cfi.pflash01,property=secure,value=on)
fi
for f in "$code" "$vars_template"; do
    [ -f "$f" ] || { echo "boot-appliance: $f missing (apt-get install ovmf)" >&2; exit 1; }
done
mkdir -p "$state/tpm"
[ -f "$state/OVMF_VARS.fd" ] || cp "$vars_template" "$state/OVMF_VARS.fd"
rm -f "$state/tpm/sock" "$state/qmp.sock"
tpm_args=()
if [ "$tpm" = 1 ]; then
    # --terminate: swtpm exits when QEMU closes the connection.
    swtpm socket --tpm2 --tpmstate dir="$state/tpm" --ctrl type=unixio,path="$state/tpm/sock" \
        --terminate --daemon
    for _ in $(seq 50); do [ -S "$state/tpm/sock" ] && break; sleep 0.1; done
    tpm_args=(-chardev socket,id=chrtpm,path="$state/tpm/sock" -tpmdev emulator,id=tpm0,chardev=chrtpm
        -device tpm-tis,tpmdev=tpm0)
fi

if [ -z "$accel" ]; then
    # PVM-backed /dev/kvm (these build machines) cannot run a stock kernel.
    if [ -w /dev/kvm ] && [ ! -d /sys/module/kvm_pvm ] && grep -qE 'vmx|svm' /proc/cpuinfo; then
        accel=kvm
    else
        accel=tcg
    fi
fi
# Under TCG the appliance gets one vCPU: with two, QEMU's emulated SVM
# loses the cross-CPU kicks the appliance's KVM sends to a CPU running a
# workspace, and the kernel soft-locks (seen here as "soft lockup ... stuck
# for 126s! [virtio-vsock]" while a VMM exited). One CPU needs no kicks.
case "$accel" in
    kvm) cpu=(-accel kvm -cpu host -smp 2) ;;
    tcg) cpu=(-accel tcg -cpu EPYC -smp 1) ;;
    *) echo "boot-appliance: --accel must be kvm or tcg" >&2; exit 2 ;;
esac
if [ -n "$tap" ]; then
    [ -z "$forwards" ] || echo "boot-appliance: --forward is ignored with --tap" >&2
    net=(-netdev tap,id=n0,ifname="$tap",script=no,downscript=no)
    echo "boot-appliance: $disk with $accel; uplink on tap $tap" >&2
else
    net=(-netdev user,id=n0,hostfwd=tcp:127.0.0.1:"$port"-:8443"$forwards")
    echo "boot-appliance: $disk with $accel; API at https://127.0.0.1:$port/" >&2
fi
exec qemu-system-x86_64 "${machine[@]}" "${cpu[@]}" -m 4096 \
    -nodefaults -display none -no-reboot \
    -drive if=pflash,format=raw,readonly=on,file="$code" \
    -drive if=pflash,format=raw,file="$state/OVMF_VARS.fd" \
    -drive file="$disk",if=virtio,format=raw \
    "${net[@]}" -device virtio-net-pci,netdev=n0 \
    "${tpm_args[@]}" \
    -serial "$serial" -qmp unix:"$state/qmp.sock",server,nowait "${direct[@]}"
