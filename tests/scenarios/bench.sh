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

# A new workspace from a template snapshot, as the appliance starts one:
# the template's VM booted with paddock.provision=wait and an empty
# placeholder disk, snapshotted once; then RUNS clones, each given a fresh
# blank 1 GiB disk (as the cold runs above) and provisioned:
# launch -> provisioned (its disk formatted and joined) -> first exec output.
if [ -f "$P/disks/template.erofs" ]; then
    rm -rf "$T/tpl-snap"; rm -f "$T/tp.sock" "$T/tp.sock_1023"
    : > "$T/tpl-placeholder.img"
    "$TK" agent-wait-ready "$T/tp.sock" 300 > "$T/tp.ready" 2>&1 &
    wp=$!
    wait_socket "$T/tp.sock_1023"
    "$VMM" --kernel "$GK" --initramfs "$P/guest/agent-initramfs.cpio" --memory-mib 512 \
        --drive "id=template,path=$P/disks/template.erofs,ro" \
        --drive "id=data,path=$T/tpl-placeholder.img" --vsock "cid=3,uds=$T/tp.sock" \
        --control "$T/tp.ctl" --console off --cmdline "quiet paddock.provision=wait" &
    vp=$!
    wait $wp
    fact bench "tpl_snapshot_taken=$("$TK" vmm-snapshot "$T/tp.ctl" "$T/tpl-snap" 2>&1 | tail -n1)"
    kill -9 $vp 2>/dev/null; wait $vp 2>/dev/null
    i=0
    while [ "$i" -lt "$RUNS" ]; do
        rm -f "$T/tc.img"
        dd if=/dev/zero of="$T/tc.img" bs=1048576 count=0 seek=1024 2>/dev/null
        fact bench "tpl_clone_$i=$("$TK" agent-bench-provision "$T/tc.sock" 2097152 -- "$VMM" \
            --restore "$T/tpl-snap" --memory-mib 512 \
            --drive "id=template,path=$P/disks/template.erofs,ro" \
            --drive "id=data,path=$T/tc.img" --vsock "cid=3,uds=$T/tc.sock" \
            --console off 2>&1 | tail -n1)"
        i=$((i + 1))
    done
fi

# Memory of ten: ten workspaces cold-booted, then ten clones of the
# template snapshot above (its memory file mapped privately, as `--restore`
# does: a page is shared until its guest writes it), all alive at once,
# each having answered one exec; their VMMs' memory summed.
if [ -f "$P/disks/template.erofs" ] && [ -f "$T/tpl-snap/memory" ]; then
    pids=""
    for k in 0 1 2 3 4 5 6 7 8 9; do
        rm -f "$T/m$k.sock" "$T/m$k.sock_1023" "$T/m$k.img"
        dd if=/dev/zero of="$T/m$k.img" bs=1048576 count=0 seek=256 2>/dev/null
        "$TK" agent-wait-ready "$T/m$k.sock" 300 > /dev/null 2>&1 &
        wp=$!
        wait_socket "$T/m$k.sock_1023"
        "$VMM" --kernel "$GK" --initramfs "$P/guest/agent-initramfs.cpio" --memory-mib 512 \
            --drive "id=template,path=$P/disks/template.erofs,ro" \
            --drive "id=data,path=$T/m$k.img" --vsock "cid=3,uds=$T/m$k.sock" \
            --console off --cmdline quiet &
        pids="$pids $!"
        wait $wp
        "$TK" agent-exec "$T/m$k.sock" echo hi > /dev/null
    done
    sleep 2
    fact bench "mem10_cold=$("$TK" mem-sum $pids 2>&1 | tail -n1)"
    kill -9 $pids 2>/dev/null; wait $pids 2>/dev/null
    pids=""
    for k in 0 1 2 3 4 5 6 7 8 9; do
        rm -f "$T/m$k.sock" "$T/m$k.img"
        dd if=/dev/zero of="$T/m$k.img" bs=1048576 count=0 seek=256 2>/dev/null
        "$VMM" --restore "$T/tpl-snap" --memory-mib 512 \
            --drive "id=template,path=$P/disks/template.erofs,ro" \
            --drive "id=data,path=$T/m$k.img" --vsock "cid=3,uds=$T/m$k.sock" \
            --console off &
        pids="$pids $!"
        wait_socket "$T/m$k.sock"
        "$TK" agent-provision "$T/m$k.sock" "clone$k" 524288 > /dev/null
        "$TK" agent-exec "$T/m$k.sock" echo hi > /dev/null
    done
    sleep 2
    fact bench "mem10_restored=$("$TK" mem-sum $pids 2>&1 | tail -n1)"
    kill -9 $pids 2>/dev/null; wait $pids 2>/dev/null
    rm -f "$T"/m?.img
fi

# Restore: the same ticking guest snapshotted once by each VMM, then
# started from that snapshot RUNS times; beside it, cold boots of the same
# guest to its first tick. QEMU's peer is its own migration-file restore
# (-incoming) of a migration file written with `migrate` (live: QEMU
# stops the guest itself once the copy converges, and a restored copy
# then starts running, as ours does).
TICK="guest: tick"
TICK_ARGS="--kernel $GK --initramfs $GI --memory-mib $MEM --no-rng"
rm -rf "$T/tick-snap"
"$VMM" $TICK_ARGS --control "$T/tick.ctl" --cmdline "quiet paddock.scenario=tick" \
    > "$T/tick.console" 2> "$T/tick.err" &
tp=$!
i=0
while ! grep -q "$TICK 5" "$T/tick.console" 2>/dev/null && [ $i -lt 1200 ]; do sleep 0.05; i=$((i + 1)); done
fact bench "snapshot_taken=$("$TK" vmm-snapshot "$T/tick.ctl" "$T/tick-snap" 2>&1 | tail -n1)"
kill -9 $tp 2>/dev/null; wait $tp 2>/dev/null
QEMU_TICK="-M microvm,x-option-roms=off,rtc=off,isa-serial=on,pic=off,pit=off \
    -accel kvm -cpu host -smp 1 -m $MEM -nodefaults -no-user-config \
    -display none -serial stdio -no-reboot -kernel $GK -initrd $GI"
QEMU_APPEND="console=ttyS0 reboot=t panic=-1 pci=off nomodule quiet paddock.scenario=tick"
rm -f "$T/mon.in" "$T/mon.out" "$T/q.state"
mkfifo "$T/mon.in" "$T/mon.out"
$QEMU -L "$P/qemu/share" $QEMU_TICK -append "$QEMU_APPEND" -monitor "pipe:$T/mon" \
    > "$T/qtick.console" 2> "$T/qtick.err" &
qp=$!
exec 7> "$T/mon.in"
cat "$T/mon.out" > "$T/mon.log" &
mp=$!
i=0
while ! grep -q "$TICK 5" "$T/qtick.console" 2>/dev/null && [ $i -lt 1200 ]; do sleep 0.05; i=$((i + 1)); done
echo "migrate \"exec:cat > $T/q.state\"" >&7
i=0
while [ $i -lt 600 ]; do
    echo "info migrate" >&7
    sleep 0.1
    grep -q "Migration status: completed" "$T/mon.log" && break
    i=$((i + 1))
done
fact bench "qemu_state_written=$(grep -q 'Migration status: completed' "$T/mon.log" && echo 1 || echo 0)"
echo "quit" >&7
exec 7>&-
wait $qp 2>/dev/null; kill $mp 2>/dev/null
i=0
while [ "$i" -lt "$RUNS" ]; do
    fact bench "tick_cold_$i=$("$TK" measure $MEM "$TICK" -- "$VMM" $TICK_ARGS \
        --console stdout --cmdline "quiet paddock.scenario=tick" 2>&1 | tail -n1)"
    fact bench "tick_restore_$i=$("$TK" measure $MEM "$TICK" -- "$VMM" --restore "$T/tick-snap" \
        --memory-mib $MEM --no-rng --console stdout 2>&1 | tail -n1)"
    fact bench "qemu_tick_cold_$i=$("$TK" measure $MEM "$TICK" -- $QEMU -L "$P/qemu/share" $QEMU_TICK \
        -append "$QEMU_APPEND" 2>&1 | tail -n1)"
    fact bench "qemu_tick_restore_$i=$("$TK" measure $MEM "$TICK" -- $QEMU -L "$P/qemu/share" $QEMU_TICK \
        -append "$QEMU_APPEND" -incoming "exec:cat $T/q.state" 2>&1 | tail -n1)"
    i=$((i + 1))
done

# Workspace restore: one agent workspace snapshotted once its agent is
# ready, then restored RUNS times (each on its own copy of the disk as it
# was at the snapshot): launch -> first exec output -> renewed.
if [ -f "$P/disks/template.erofs" ]; then
    rm -rf "$T/ws-snap"; rm -f "$T/ws.sock" "$T/ws.sock_1023"
    dd if=/dev/zero of="$T/ws-snap.img" bs=1048576 count=0 seek=128 2>/dev/null
    "$TK" agent-wait-ready "$T/ws.sock" 300 > "$T/ws.ready" 2>&1 &
    wp=$!
    wait_socket "$T/ws.sock_1023"
    "$VMM" --kernel "$GK" --initramfs "$P/guest/agent-initramfs.cpio" --memory-mib 512 \
        --drive "id=template,path=$P/disks/template.erofs,ro" \
        --drive "id=data,path=$T/ws-snap.img" --vsock "cid=3,uds=$T/ws.sock" \
        --control "$T/ws.ctl" --console off --cmdline quiet &
    vp=$!
    wait $wp
    fact bench "ws_snapshot_taken=$("$TK" vmm-snapshot "$T/ws.ctl" "$T/ws-snap" 2>&1 | tail -n1)"
    kill -9 $vp 2>/dev/null; wait $vp 2>/dev/null
    i=0
    while [ "$i" -lt "$RUNS" ]; do
        cp "$T/ws-snap.img" "$T/wr.img"
        fact bench "ws_restore_$i=$("$TK" agent-bench-restore "$T/wr.sock" -- "$VMM" \
            --restore "$T/ws-snap" --memory-mib 512 \
            --drive "id=template,path=$P/disks/template.erofs,ro" \
            --drive "id=data,path=$T/wr.img" --vsock "cid=3,uds=$T/wr.sock" \
            --console "$T/wr-$i.console" 2>&1 | tail -n1)"
        show bench "$T/wr-$i.console"
        i=$((i + 1))
    done
fi
