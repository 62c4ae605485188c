# VMM scenarios: boot, topology, block, vsock, panic. One VM boot each.
. "$P/scenarios/lib.sh"

boot_hello() { # name kernel
    name=$1
    uds=$T/$name.sock
    "$TK" uds-recv "${uds}_1000" --text > "$T/$name.vsock" 2>&1 &
    rp=$!
    wait_socket "${uds}_1000"
    "$VMM" --kernel "$2" --initramfs "$GI" --vsock "cid=3,uds=$uds" \
        --cmdline "paddock.scenario=hello" > "$T/$name.console" 2> "$T/$name.err"
    rc=$?
    fact "$name" "vmm_exit=$rc"
    # A VMM that failed may never have connected: don't wait for it forever.
    [ "$rc" = 0 ] || { show "$name" "$T/$name.err"; kill $rp 2>/dev/null; }
    wait $rp
    fact "$name" "$(cat "$T/$name.vsock")"
    fact "$name" "serial_hello=$(grep -c 'guest: hello over serial' "$T/$name.console")"
    fact "$name" "boot_timer_lines=$(grep -c 'boot-timer: guest init reached' "$T/$name.err")"
    guest_facts "$name" "$T/$name.console"
    show "$name" "$T/$name.err"
    show "$name" "$T/$name.console"
}

boot_hello boot_pvh "$GK"
boot_hello boot_bzimage "$GBZ"

# --- topology ---
"$VMM" --kernel "$GK" --initramfs "$GI" --vcpus 2 --memory-mib 320 --no-rng \
    --cmdline "paddock.scenario=topology" > "$T/topology.console" 2> "$T/topology.err"
fact topology "vmm_exit=$?"
guest_facts topology "$T/topology.console"
show topology "$T/topology.err"

# --- block ---
cp "$P/disks/ro.ext4" "$T/ro.ext4"
fact blk "ro_image_sha256_before=$("$TK" sha-stdin < "$T/ro.ext4" | sed 's/.*sha256=//')"
dd if=/dev/zero of="$T/rw.img" bs=1048576 count=16 2>/dev/null
"$VMM" --kernel "$GK" --initramfs "$GI" \
    --drive "id=ro,path=$T/ro.ext4,ro" --drive "id=rw,path=$T/rw.img" \
    --cmdline "paddock.scenario=blk" > "$T/blk.console" 2> "$T/blk.err"
fact blk "vmm_exit=$?"
guest_facts blk "$T/blk.console"
fact blk "ro_image_sha256_after=$("$TK" sha-stdin < "$T/ro.ext4" | sed 's/.*sha256=//')"
fact blk "rw_written=$(head -c 4194304 "$T/rw.img" | "$TK" sha-stdin | tr ' ' ',')"
fact blk "rw_size_bytes=$(wc -c < "$T/rw.img" | tr -d ' ')"
show blk "$T/blk.err"
show blk "$T/blk.console"

# --- vsock, 10 MiB each way ---
uds=$T/vsock.sock
"$TK" uds-recv "${uds}_1000" > "$T/vsock.g2h" 2>&1 &
rp=$!
wait_socket "${uds}_1000"
"$VMM" --kernel "$GK" --initramfs "$GI" --vcpus 1 --vsock "cid=3,uds=$uds" \
    --cmdline "paddock.scenario=vsock" > "$T/vsock.console" 2> "$T/vsock.err" &
vp=$!
"$TK" uds-send-pattern "$uds" 2000 9 10485760 > "$T/vsock.h2g" 2>&1
fact vsock "host_send_rc=$?"
wait_vm $vp 300
fact vsock "vmm_exit=$?"
wait $rp
fact vsock "g2h=$(tr ' ' ',' < "$T/vsock.g2h")"
fact vsock "h2g=$(tr ' ' ',' < "$T/vsock.h2g")"
guest_facts vsock "$T/vsock.console"
show vsock "$T/vsock.err"
show vsock "$T/vsock.console"

# --- guest kernel panic ---
"$VMM" --kernel "$GK" --initramfs "$GI" \
    --cmdline "paddock.scenario=panic" > "$T/panic.console" 2> "$T/panic.err"
fact panic "vmm_exit=$?"
fact panic "reported=$(grep -c 'guest kernel panic: Attempted to kill init' "$T/panic.err")"
show panic "$T/panic.err"
