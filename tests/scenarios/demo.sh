# The demo `just run` shows: one workspace VM with its console on your terminal.
. "$P/scenarios/lib.sh"
# In the L1 the terminal is its serial console: let keystrokes through raw,
# so the guest's shell (not the L1's tty) echoes and edits lines.
if [ -t 0 ]; then stty raw -echo 2>/dev/null; fi
dd if=/dev/zero of="$T/demo-disk.img" bs=1048576 count=0 seek=64 2>/dev/null
"$VMM" --kernel "$GK" --initramfs "$GI" --vcpus 2 --memory-mib 512 \
    --drive "id=scratch,path=$T/demo-disk.img" --vsock "cid=3,uds=$T/demo.sock" --cmdline "quiet paddock.scenario=demo"
rc=$?
if [ -t 0 ]; then stty sane 2>/dev/null; fi
echo "paddock-vmm exited with status $rc"
