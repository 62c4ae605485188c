//! The cgroup v2 limits of a workspace, derived from its request: what the
//! guest can take from the host is capped below the guest, by the host
//! kernel, whatever runs inside.

use super::run_error::{io, write, RunError};
use super::workspace::{
    WorkspaceRecord, DEFAULT_NET_CONNECTIONS_PER_S, DEFAULT_NET_MIB_PER_S, IO_BPS_PER_VCPU,
    IO_IOPS_PER_VCPU,
};
use std::path::{Path, PathBuf};

/// Memory a VMM may use beyond its guest's RAM (page tables, buffers).
pub const VMM_OVERHEAD_MIB: u64 = 96;

/// The cgroup v2 limits of one workspace, all derived from its request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// cpu.max: microseconds of CPU per 100 ms period.
    pub cpu_quota_us: u64,
    /// memory.max: guest RAM plus the VMM's bounded overhead.
    pub memory_bytes: u64,
    /// pids.max: the VMM's threads (one per vCPU, device workers) and no
    /// room for anything else.
    pub pids: u64,
    pub io_bps: u64,
    pub io_iops: u64,
    /// The VMM's token buckets on the workspace's disk (the API may set
    /// them lower than io.max).
    pub disk_bps: u64,
    pub disk_iops: u64,
    /// The VMM's token bucket on its NIC, each direction.
    pub net_bps: u64,
    /// New connections per second (the firewall's limit).
    pub net_connections_per_s: u64,
}

impl Limits {
    pub fn for_workspace(ws: &WorkspaceRecord) -> Limits {
        let vcpus = u64::from(ws.vcpus);
        Limits {
            cpu_quota_us: vcpus * 100_000,
            memory_bytes: (ws.memory_mib + VMM_OVERHEAD_MIB) << 20,
            pids: vcpus + 16,
            io_bps: vcpus * IO_BPS_PER_VCPU,
            io_iops: vcpus * IO_IOPS_PER_VCPU,
            disk_bps: ws
                .disk_mib_per_s
                .map_or(vcpus * IO_BPS_PER_VCPU, |m| m << 20),
            disk_iops: ws.disk_iops.unwrap_or(vcpus * IO_IOPS_PER_VCPU),
            net_bps: ws.net_mib_per_s.unwrap_or(DEFAULT_NET_MIB_PER_S) << 20,
            net_connections_per_s: ws
                .net_connections_per_s
                .unwrap_or(DEFAULT_NET_CONNECTIONS_PER_S),
        }
    }

    /// Writes them into the cgroup `cg`; io.max goes on the disk that
    /// holds `data` (the workspace's disk file), which is also the disk the
    /// template partition is on.
    /// `mapped` is the workspace's decrypted disk (its dm-crypt mapping,
    /// a device of its own that the VMM's I/O enters first), limited too.
    ///
    /// The CPU cap is not among them: `cap_cpu` sets it once the guest's
    /// agent is up. Until then the guest runs only our kernel and agent
    /// and the template's mke2fs (nothing of the tenant's), on as many
    /// vCPU threads as it has. The cap's bandwidth accounting, where the
    /// host is itself a virtual machine short of CPU, charges a thread
    /// for the time its vCPU was descheduled, and a capped boot was seen
    /// throttled nearly all the time (CI: 378 s throttled for 5 s used,
    /// the start given up after 120 s).
    pub fn apply(&self, cg: &Path, data: &Path, mapped: Option<u64>) -> Result<(), RunError> {
        write(&cg.join("memory.max"), &self.memory_bytes.to_string())?;
        // Absent when the kernel has no swap accounting; nothing to limit then.
        let _ = write(&cg.join("memory.swap.max"), "0");
        write(&cg.join("cpu.max"), "max 100000")?;
        write(&cg.join("pids.max"), &self.pids.to_string())?;
        let mut disks = vec![whole_disk_of(data)?];
        if let Some(dev) = mapped {
            disks.push(format!("{}:{}", libc::major(dev), libc::minor(dev)));
        }
        for disk in disks {
            write(
                &cg.join("io.max"),
                &format!(
                    "{disk} rbps={bps} wbps={bps} riops={iops} wiops={iops}",
                    bps = self.io_bps,
                    iops = self.io_iops
                ),
            )?;
        }
        Ok(())
    }
}

impl Limits {
    /// The CPU cap, from the moment the guest's agent is up (before any
    /// of the tenant's commands can run).
    pub fn cap_cpu(&self, cg: &Path) -> Result<(), RunError> {
        write(
            &cg.join("cpu.max"),
            &format!("{} 100000", self.cpu_quota_us),
        )
    }
}

/// "MAJ:MIN" of the whole disk under the filesystem holding `path`: io.max
/// takes disks, not partitions.
fn whole_disk_of(path: &Path) -> Result<String, RunError> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(path).map_err(io("stat", path))?.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let sys = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    if !sys.join("partition").exists() {
        return Ok(format!("{major}:{minor}"));
    }
    let parent = sys.join("../dev");
    std::fs::read_to_string(&parent)
        .map(|s| s.trim().to_string())
        .map_err(io("reading", &parent))
}

impl Limits {
    pub fn public(&self) -> paddock_api_types::WorkspaceLimits {
        paddock_api_types::WorkspaceLimits {
            cpu_max_us_per_100ms: self.cpu_quota_us,
            memory_max_bytes: self.memory_bytes,
            pids_max: self.pids,
            io_max_bytes_per_s: self.io_bps,
            io_max_ops_per_s: self.io_iops,
            disk_bytes_per_s: self.disk_bps,
            disk_ops_per_s: self.disk_iops,
            net_bytes_per_s: self.net_bps,
            net_connections_per_s: self.net_connections_per_s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_scale_with_the_request() {
        let ws: WorkspaceRecord = serde_json::from_value(serde_json::json!({
            "id": "ws_1", "owner": "t", "template": "default", "vcpus": 2,
            "memory_mib": 512, "disk_mib": 1024, "labels": {}, "env": {},
            "created_at": 0, "expires_at": 1, "state": "running", "uid": 200000
        }))
        .expect("record");
        let l = Limits::for_workspace(&ws);
        assert_eq!(l.cpu_quota_us, 200_000, "two CPUs' worth per period");
        assert_eq!(l.memory_bytes, (512 + VMM_OVERHEAD_MIB) << 20);
        assert_eq!(l.pids, 18);
        assert_eq!(l.io_bps, 200 << 20);
        assert_eq!(l.io_iops, 8000);
        assert_eq!(l.public().memory_max_bytes, l.memory_bytes);
    }
}
