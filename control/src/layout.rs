//! Where a workspace's pieces live on the host: its directories, its
//! sockets, its cgroup, the names of its key and dm-crypt mapping, and the
//! uids and files every workspace shares. Names only; nothing here touches
//! the filesystem.

use std::path::PathBuf;

pub const VMM: &str = "/usr/lib/paddock/paddock-vmm";
pub const GUEST_KERNEL: &str = "/usr/lib/paddock/guest/vmlinux";
pub const AGENT_INITRAMFS: &str = "/usr/lib/paddock/guest/agent.cpio";

/// First uid handed to workspaces; each gets its own.
pub const WS_UID_BASE: u32 = 200_000;

/// PID 1's demo workspace (`paddock-init`'s `demo`): not in the state
/// database, so its data is not an orphan's.
pub const DEMO_NAME: &str = "demo";

/// Group allowed to use /dev/kvm and read the template partition.
pub const VM_GID: u32 = 901;
/// Where every workspace's cgroup is made.
pub(crate) const CGROUP_ROOT: &str = "/sys/fs/cgroup/paddock";

/// The data partition's mount point.
pub const DATA_MOUNT: &str = "/data";

/// Where workspaces' disks live, one directory each.
pub const WORKSPACES_DIR: &str = "/data/workspaces";

pub fn data_dir(id: &str) -> PathBuf {
    PathBuf::from(WORKSPACES_DIR).join(id)
}

pub fn run_dir(id: &str) -> PathBuf {
    PathBuf::from("/run/paddock/ws").join(id)
}

/// Where the jail mounts the VMM's root (in its own mount namespace; on the
/// host this stays an empty directory).
pub fn jail_dir(id: &str) -> PathBuf {
    PathBuf::from("/run/paddock/jail").join(id)
}

/// The name its disk key has in the key store.
pub fn key_name(id: &str) -> String {
    format!("ws-{id}")
}

/// Its dm-crypt mapping's name.
pub fn mapping_name(id: &str) -> String {
    format!("paddock-ws-{id}")
}

/// The block device node of its decrypted disk, the only form of the disk
/// its VMM is given.
pub fn disk_node(id: &str) -> PathBuf {
    PathBuf::from("/dev/paddock/disks").join(id)
}

/// Where a paused workspace's VM is kept: its state and its memory, each a
/// file of ciphertext under the workspace's disk key (pausing.rs).
pub fn paused_dir(id: &str) -> PathBuf {
    data_dir(id).join("paused")
}

/// The dm-crypt mappings of its paused state and memory.
pub fn paused_mappings(id: &str) -> [String; 2] {
    [format!("paddock-ps-{id}"), format!("paddock-pm-{id}")]
}

/// The directory of device nodes its VMM restores from (`--restore`): the
/// decrypted state and memory, named as the VMM expects.
pub fn restore_dir(id: &str) -> PathBuf {
    PathBuf::from("/dev/paddock/restore").join(id)
}

/// The VMM's control socket (vmm/src/control.rs).
pub fn control_path(id: &str) -> PathBuf {
    run_dir(id).join("control.sock")
}

pub fn vsock_path(id: &str) -> PathBuf {
    run_dir(id).join("vsock.sock")
}

pub fn cgroup_dir(id: &str) -> PathBuf {
    PathBuf::from(CGROUP_ROOT).join(id)
}
