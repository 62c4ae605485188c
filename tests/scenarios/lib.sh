# Helpers for scenario scripts. They run under busybox sh inside the L1 VM
# (P=/paddock) or on a host with hardware KVM (P=a staging directory).
# Scenarios print facts; the Rust tests decide what passes.
TK=$P/bin/paddock-testkit
VMM=$P/bin/paddock-vmm
GK=$P/guest/vmlinux
GBZ=$P/guest/bzImage
GI=$P/guest/initramfs.cpio
T=${T:-/tmp/paddock-scenarios}
mkdir -p "$T"

fact() { # scenario key=value
    echo "@@@ FACT $1 $2"
}

# Re-emits "guest: k=v" console lines of scenario $1 from file $2 as facts.
guest_facts() {
    tr -d '\r' < "$2" | sed -n "s/^guest: \([a-z_0-9]*=.*\)/@@@ FACT $1 \1/p"
}

# Shows the tail of a log, for whoever reads a failure.
show() { # scenario file
    tr -d '\r' < "$2" | tail -n 40 | sed "s|^|@@@ LOG $1 $(basename "$2"): |"
}

# Waits (up to 30 s) until the Unix socket $1 exists: a listener started in
# the background must be bound before the VM that connects to it boots.
wait_socket() {
    i=0
    while [ ! -S "$1" ] && [ $i -lt 600 ]; do
        sleep 0.05
        i=$((i + 1))
    done
}

# Waits up to $2 seconds for background process $1 (a VMM) and returns its
# exit status; one that is still running then is killed and gives 124.
wait_vm() {
    i=0
    while kill -0 "$1" 2>/dev/null && [ $i -lt $(($2 * 10)) ]; do
        sleep 0.1
        i=$((i + 1))
    done
    if kill -0 "$1" 2>/dev/null; then
        kill -9 "$1" 2>/dev/null
        wait "$1" 2>/dev/null
        return 124
    fi
    wait "$1"
}
