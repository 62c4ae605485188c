# Guest agent scenarios: a workspace VM booted from the agent initramfs with
# the default template (read-only) and a blank writable disk; the agent
# suite runs against it; then a restart shows the writable disk persists.
. "$P/scenarios/lib.sh"
AI=$P/guest/agent-initramfs.cpio
TPL=$P/disks/template.erofs
fact agent "template_sha_before=$("$TK" sha-stdin < "$TPL" | sed 's/.*sha256=//')"
dd if=/dev/zero of="$T/data.img" bs=1048576 count=0 seek=2048 2>/dev/null

# Boots workspace $1 in the background (VM pid in $VM) and waits for its agent.
boot() {
    uds=$T/$1.sock
    rm -f "$uds" "${uds}_1023"
    "$TK" agent-wait-ready "$uds" 300 > "$T/$1.ready" 2>&1 &
    wp=$!
    wait_socket "${uds}_1023"
    "$VMM" --kernel "$GK" --initramfs "$AI" --vcpus 1 --memory-mib 768 \
        --drive "id=template,path=$TPL,ro" --drive "id=data,path=$T/data.img" \
        --vsock "cid=3,uds=$uds" --cmdline "paddock.hostname=$1" \
        > "$T/$1.console" 2> "$T/$1.err" &
    VM=$!
    wait $wp
    for kv in $(tail -n1 "$T/$1.ready"); do fact agent "$1_$kv"; done
}

# Reboots the workspace from inside (as a restart would) and waits for the VMM.
restart_from_inside() {
    "$TK" agent-exec "$T/$1.sock" python3 -c \
        "import os, ctypes; os.sync(); ctypes.CDLL(None).reboot(0x1234567)" > /dev/null 2>&1
    wait_vm $VM 120
    fact agent "$1_vmm_exit=$?"
}

boot ws1
"$TK" agent-suite "$T/ws1.sock" 2> "$T/suite.err" | while IFS= read -r line; do fact agent "$line"; done
show agent "$T/suite.err"
"$TK" agent-write "$T/ws1.sock" /home/agent/persist.txt "written before the restart"
fact agent "hostname=$("$TK" agent-exec "$T/ws1.sock" cat /proc/sys/kernel/hostname | sed 's/.*stdout=//')"
restart_from_inside ws1

boot ws2
fact agent "persisted=$("$TK" agent-read "$T/ws2.sock" /home/agent/persist.txt)"
fact agent "template_id=$("$TK" agent-exec "$T/ws2.sock" cat /etc/paddock-template | sed 's/.*stdout=//')"
restart_from_inside ws2

# --- snapshot: a booted workspace paused in place, then written to a
# snapshot from which two clones are restored side by side ---
SN=$T/snapshot
dd if=/dev/zero of="$T/snap-data.img" bs=1048576 count=0 seek=128 2>/dev/null
rm -f "$T/snap.sock" "$T/snap.sock_1023"
"$TK" agent-wait-ready "$T/snap.sock" 300 > "$T/snap.ready" 2>&1 &
wp=$!
wait_socket "$T/snap.sock_1023"
"$VMM" --kernel "$GK" --initramfs "$AI" --vcpus 1 --memory-mib 512 \
    --drive "id=template,path=$TPL,ro" --drive "id=data,path=$T/snap-data.img" \
    --vsock "cid=3,uds=$T/snap.sock" --control "$T/snap.ctl" \
    --cmdline "paddock.hostname=snap" > "$T/snap.console" 2> "$T/snap.err" &
SVM=$!
wait $wp
fact snapshot "$(tail -n1 "$T/snap.ready" | tr ' ' '\n' | grep '^ready=')"
# State that lives only in guest memory (tmpfs) and a process that runs on.
"$TK" agent-exec "$T/snap.sock" sh -c 'echo made-before > /dev/shm/marker; sleep 100000 > /dev/null 2>&1 & echo $! > /dev/shm/sleeper' > /dev/null
fact snapshot "pause_$("$TK" vmm-pause "$T/snap.ctl" 2>&1 | tr ' ' '_')"
fact snapshot "paused_exec=$(timeout 5 "$TK" agent-exec "$T/snap.sock" true > /dev/null 2>&1; echo $?)"
fact snapshot "resume_$("$TK" vmm-resume "$T/snap.ctl" 2>&1 | tr ' ' '_')"
fact snapshot "after_resume=$("$TK" agent-exec "$T/snap.sock" cat /dev/shm/marker | sed 's/.*stdout=//')"
fact snapshot "snapshot_$("$TK" vmm-snapshot "$T/snap.ctl" "$SN" 2>&1 | tr ' ' '_')"
# The disk as it was at the snapshot, one copy per clone, taken while paused.
cp "$T/snap-data.img" "$T/clone-a.img"
cp "$T/snap-data.img" "$T/clone-b.img"
kill -9 $SVM 2>/dev/null
wait $SVM 2>/dev/null
fact snapshot "state_bytes=$(wc -c < "$SN/state" | tr -d ' ')"
fact snapshot "memory_bytes=$(wc -c < "$SN/memory" | tr -d ' ')"
fact snapshot "memory_blocks_kib=$(du -k "$SN/memory" | cut -f1)"
restore() { # name
    rm -f "$T/$1.sock"
    "$VMM" --restore "$SN" --vcpus 1 --memory-mib 512 \
        --drive "id=template,path=$TPL,ro" --drive "id=data,path=$T/clone-$1.img" \
        --vsock "cid=3,uds=$T/$1.sock" --control "$T/$1.ctl" \
        > "$T/clone-$1.console" 2> "$T/clone-$1.err" &
    echo $! > "$T/clone-$1.pid"
    wait_socket "$T/$1.sock"
}
restore a
restore b
for c in a b; do
    s=$T/$c.sock
    fact snapshot "${c}_marker=$("$TK" agent-exec "$s" cat /dev/shm/marker | sed 's/.*stdout=//')"
    fact snapshot "${c}_sleeper_alive=$("$TK" agent-exec "$s" sh -c 'kill -0 $(cat /dev/shm/sleeper) && echo yes' | sed 's/.*stdout=//')"
    fact snapshot "${c}_renew=$("$TK" agent-renew "$s" "clone-$c" > /dev/null 2>&1; echo $?)"
    fact snapshot "${c}_random=$("$TK" agent-exec "$s" sh -c 'head -c 16 /dev/urandom | od -An -tx1 | tr -d " \n"' | sed 's/.*stdout=//')"
    fact snapshot "${c}_uuid=$("$TK" agent-exec "$s" cat /proc/sys/kernel/random/uuid | sed 's/.*stdout=//')"
    fact snapshot "${c}_machine_id=$("$TK" agent-exec "$s" cat /etc/machine-id | sed 's/.*stdout=//')"
    fact snapshot "${c}_hostname=$("$TK" agent-exec "$s" cat /proc/sys/kernel/hostname | sed 's/.*stdout=//')"
    fact snapshot "${c}_clock_skew_s=$(( $("$TK" agent-exec "$s" date +%s | sed 's/.*stdout=//') - $(date +%s) ))"
    fact snapshot "${c}_disk_write=$("$TK" agent-exec "$s" sh -c "echo $c > /home/agent/clone.txt && sync && cat /home/agent/clone.txt" | sed 's/.*stdout=//')"
done
for c in a b; do
    kill -9 "$(cat "$T/clone-$c.pid")" 2>/dev/null
done
# A state file that was damaged on disk is refused with a clear message.
cp -r "$SN" "$T/damaged"
printf 'X' | dd of="$T/damaged/state" bs=1 seek=100 conv=notrunc 2>/dev/null
"$VMM" --restore "$T/damaged" --vcpus 1 --memory-mib 512 --vsock "cid=3,uds=$T/d.sock" \
    --drive "id=template,path=$TPL,ro" --drive "id=data,path=$T/clone-a.img" \
    > /dev/null 2> "$T/damaged.err"
fact snapshot "damaged_exit=$?"
fact snapshot "damaged_says_damaged=$(grep -c 'damaged' "$T/damaged.err")"
"$VMM" --restore "$SN" --vcpus 1 --memory-mib 256 --vsock "cid=3,uds=$T/d.sock" \
    --drive "id=template,path=$TPL,ro" --drive "id=data,path=$T/clone-a.img" \
    > /dev/null 2> "$T/mismatch.err"
fact snapshot "mismatch_exit=$?"
fact snapshot "mismatch_says_size=$(grep -c '512 MiB guest' "$T/mismatch.err")"
show snapshot "$T/snap.err"
show snapshot "$T/clone-a.err"
show snapshot "$T/clone-a.console"
show snapshot "$T/clone-b.err"
show snapshot "$T/damaged.err"

# --- template: an agent booted to wait for Provision, with an empty
# placeholder for the writable disk, snapshotted once; two clones restored
# with blank disks of their own, of different sizes, and provisioned ---
TS=$T/template-snap
: > "$T/placeholder.img"
rm -f "$T/tpl.sock" "$T/tpl.sock_1023"
"$TK" agent-wait-ready "$T/tpl.sock" 300 > "$T/tpl.ready" 2>&1 &
wp=$!
wait_socket "$T/tpl.sock_1023"
"$VMM" --kernel "$GK" --initramfs "$AI" --vcpus 1 --memory-mib 512 \
    --drive "id=template,path=$TPL,ro" --drive "id=data,path=$T/placeholder.img" \
    --vsock "cid=3,uds=$T/tpl.sock" --control "$T/tpl.ctl" \
    --cmdline "paddock.provision=wait" > "$T/tpl.console" 2> "$T/tpl.err" &
TVM=$!
wait $wp
fact template "$(tail -n1 "$T/tpl.ready" | tr ' ' '\n' | grep '^ready=')"
fact template "snapshot_$("$TK" vmm-snapshot "$T/tpl.ctl" "$TS" 2>&1 | tr ' ' '_')"
kill -9 $TVM 2>/dev/null
wait $TVM 2>/dev/null
fact template "memory_blocks_kib=$(du -k "$TS/memory" | cut -f1)"
provisioned() { # name sectors
    rm -f "$T/$1.sock"
    dd if=/dev/zero of="$T/$1-data.img" bs=512 count=0 seek="$2" 2>/dev/null
    "$VMM" --restore "$TS" --vcpus 1 --memory-mib 512 \
        --drive "id=template,path=$TPL,ro" --drive "id=data,path=$T/$1-data.img" \
        --vsock "cid=3,uds=$T/$1.sock" \
        > "$T/$1.console" 2> "$T/$1.err" &
    echo $! > "$T/$1.pid"
    wait_socket "$T/$1.sock"
    s=$T/$1.sock
    fact template "$1_provision_$("$TK" agent-provision "$s" "$1" "$2" 2>&1 | tr ' ' '_')"
    fact template "$1_again=$("$TK" agent-provision "$s" "$1" "$2" 2>&1 | grep -c 'already a workspace')"
    fact template "$1_disk_sectors=$("$TK" agent-exec "$s" cat /sys/class/block/vdb/size | sed 's/.*stdout=//')"
    fact template "$1_data_mount=$("$TK" agent-exec "$s" sh -c "grep -c '^/dev/vdb /run/paddock/data ext4' /proc/mounts" | sed 's/.*stdout=//')"
    fact template "$1_template_id=$("$TK" agent-exec "$s" cat /etc/paddock-template | sed 's/.*stdout=//')"
    fact template "$1_hostname=$("$TK" agent-exec "$s" cat /proc/sys/kernel/hostname | sed 's/.*stdout=//')"
    fact template "$1_machine_id=$("$TK" agent-exec "$s" cat /etc/machine-id | sed 's/.*stdout=//')"
    fact template "$1_random=$("$TK" agent-exec "$s" sh -c 'head -c 16 /dev/urandom | od -An -tx1 | tr -d " \n"' | sed 's/.*stdout=//')"
    fact template "$1_fs_uuid=$("$TK" agent-exec "$s" sh -c 'od -An -tx1 -j 1128 -N 16 /dev/vdb | tr -d " \n"' | sed 's/.*stdout=//')"
    fact template "$1_clock_skew_s=$(( $("$TK" agent-exec "$s" date +%s | sed 's/.*stdout=//') - $(date +%s) ))"
    fact template "$1_disk_write=$("$TK" agent-exec "$s" sh -c "echo $1 > /home/agent/own.txt && sync && cat /home/agent/own.txt" | sed 's/.*stdout=//')"
}
provisioned pa 524288
provisioned pb 1048576
for c in pa pb; do
    kill -9 "$(cat "$T/$c.pid")" 2>/dev/null
done
# The clone's disk holds what it wrote: read back by a cold boot of it.
rm -f "$T/pa-cold.sock" "$T/pa-cold.sock_1023"
"$TK" agent-wait-ready "$T/pa-cold.sock" 300 > "$T/pa-cold.ready" 2>&1 &
wp=$!
wait_socket "$T/pa-cold.sock_1023"
"$VMM" --kernel "$GK" --initramfs "$AI" --vcpus 1 --memory-mib 512 \
    --drive "id=template,path=$TPL,ro" --drive "id=data,path=$T/pa-data.img" \
    --vsock "cid=3,uds=$T/pa-cold.sock" --cmdline "paddock.hostname=pa-cold" \
    > "$T/pa-cold.console" 2> "$T/pa-cold.err" &
CVM=$!
wait $wp
fact template "cold_reads=$("$TK" agent-read "$T/pa-cold.sock" /home/agent/own.txt)"
kill -9 $CVM 2>/dev/null
# A provisioned placeholder's size is not what the host gave: refused.
rm -f "$T/pz.sock"
"$VMM" --restore "$TS" --vcpus 1 --memory-mib 512 \
    --drive "id=template,path=$TPL,ro" --drive "id=data,path=$T/placeholder.img" \
    --vsock "cid=3,uds=$T/pz.sock" > /dev/null 2> "$T/pz.err" &
ZVM=$!
wait_socket "$T/pz.sock"
fact template "wrong_size=$("$TK" agent-provision "$T/pz.sock" pz 2048 2>&1 | grep -c 'shows 0 sectors')"
kill -9 $ZVM 2>/dev/null
show template "$T/tpl.console"
show template "$T/tpl.err"
show template "$T/pa.console"
show template "$T/pa.err"
show template "$T/pb.err"

fact agent "template_sha_after=$("$TK" sha-stdin < "$TPL" | sed 's/.*sha256=//')"
fact agent "secret_in_logs=$(cat "$T"/ws*.console "$T"/ws*.err | grep -c 's3cr3t-value-7f9a')"
show agent "$T/ws1.console"
show agent "$T/ws1.err"
show agent "$T/ws2.console"
