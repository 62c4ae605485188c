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

fact agent "template_sha_after=$("$TK" sha-stdin < "$TPL" | sed 's/.*sha256=//')"
fact agent "secret_in_logs=$(cat "$T"/ws*.console "$T"/ws*.err | grep -c 's3cr3t-value-7f9a')"
show agent "$T/ws1.console"
show agent "$T/ws1.err"
show agent "$T/ws2.console"
