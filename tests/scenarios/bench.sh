# Boot benchmark: paddock-vmm and QEMU microvm boot the same kernel and
# initramfs, interleaved, timed by the same tool (paddock-testkit measure).
. "$P/scenarios/lib.sh"
RUNS=$(cat "$P/bench/runs" 2>/dev/null || echo 10)
MEM=256
QEMU="$P/qemu/lib/ld-linux-x86-64.so.2 --library-path $P/qemu/lib $P/qemu/bin/qemu-system-x86_64"
MARK="guest: scenario=bench"

paddock() { # scenario
    "$TK" measure $MEM "$MARK" -- "$VMM" --kernel "$GK" --initramfs "$GI" \
        --memory-mib $MEM --no-rng --console stdout --cmdline "quiet paddock.scenario=$1"
}

qemu_microvm() { # scenario
    "$TK" measure $MEM "$MARK" -- $QEMU -L "$P/qemu/share" \
        -M microvm,x-option-roms=off,rtc=off,isa-serial=on,pic=off,pit=off \
        -accel kvm -cpu host -smp 1 -m $MEM -nodefaults -no-user-config \
        -display none -serial stdio -no-reboot \
        -kernel "$GK" -initrd "$GI" \
        -append "console=ttyS0 reboot=t panic=-1 pci=off nomodule quiet paddock.scenario=$1"
}

i=0
while [ "$i" -lt "$RUNS" ]; do
    fact bench "paddock_time_$i=$(paddock bench 2>&1 | tail -n1)"
    fact bench "qemu_time_$i=$(qemu_microvm bench 2>&1 | tail -n1)"
    fact bench "paddock_mem_$i=$(paddock bench-mem 2>&1 | tail -n1)"
    fact bench "qemu_mem_$i=$(qemu_microvm bench-mem 2>&1 | tail -n1)"
    i=$((i + 1))
done

# Workspace readiness: VMM launch -> agent ready -> first exec output, with
# the default template and a fresh (blank) writable disk each time.
if [ -f "$P/disks/template.erofs" ]; then
    i=0
    while [ "$i" -lt "$RUNS" ]; do
        rm -f "$T/ab.sock" "$T/ab.sock_1023"
        dd if=/dev/zero of="$T/ab.img" bs=1048576 count=0 seek=1024 2>/dev/null
        fact bench "agent_$i=$("$TK" agent-bench "$T/ab.sock" -- "$VMM" --kernel "$GK" \
            --initramfs "$P/guest/agent-initramfs.cpio" --memory-mib 512 \
            --drive "id=template,path=$P/disks/template.erofs,ro" \
            --drive "id=data,path=$T/ab.img" --vsock "cid=3,uds=$T/ab.sock" \
            --console off --cmdline quiet 2>&1 | tail -n1)"
        i=$((i + 1))
    done
fi
