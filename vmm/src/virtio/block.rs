//! virtio-blk on a raw file: read, write, flush and get-id, with every
//! request checked against the disk's size and the chain's buffers.

use super::chain::{Chain, ChainLimits};
use super::worker::{self, DeviceFault, DeviceWorker, WorkerContext, WorkerHandle};
use super::{device_id, read_config_bytes, ActivateError, Activation, Interrupt, VirtioDevice};
use crate::memory::GuestMemory;
use crate::rate_limit::{RateLimit, RateLimiter};
use crate::seccomp::ThreadKind;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};
use virtio_queue::{Queue, QueueT};

const VIRTIO_BLK_F_SEG_MAX: u64 = 1 << 2;
const VIRTIO_BLK_F_RO: u64 = 1 << 5;
const VIRTIO_BLK_F_FLUSH: u64 = 1 << 9;

const VIRTIO_BLK_T_IN: u32 = 0;
const VIRTIO_BLK_T_OUT: u32 = 1;
const VIRTIO_BLK_T_FLUSH: u32 = 4;
const VIRTIO_BLK_T_GET_ID: u32 = 8;

const VIRTIO_BLK_S_OK: u8 = 0;
const VIRTIO_BLK_S_IOERR: u8 = 1;
const VIRTIO_BLK_S_UNSUPP: u8 = 2;

const SECTOR_SIZE: u64 = 512;
const HEADER_LEN: u64 = 16;
const ID_LEN: usize = 20;
const QUEUE_SIZE: u16 = 256;
/// Data segments per request we tell the driver it may use: a chain also
/// needs the header and status descriptors, and must fit the queue.
const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;
/// Bounce-buffer size for copying between the file and guest memory.
const CHUNK: usize = 64 * 1024;
const LIMITS: ChainLimits = ChainLimits {
    max_descriptors: QUEUE_SIZE as usize,
    max_bytes: 64 << 20,
};
/// Guest mistakes are logged this many times per device, then counted silently.
const MAX_LOGGED_ERRORS: u32 = 10;

/// The backing file of one drive.
pub struct Disk {
    file: File,
    read_only: bool,
    /// Size in 512-byte sectors; a partial last sector is not exposed.
    sectors: u64,
    id: String,
    rate: RateLimit,
    /// Where the control socket puts a new limit.
    control: Option<std::sync::Arc<crate::control::RateCell>>,
}

impl Disk {
    pub fn new(mut file: File, read_only: bool, id: &str) -> std::io::Result<Self> {
        // Seeking to the end sizes block devices (a partition holding a
        // template) as well as files; metadata() says 0 for a device.
        let len = std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0))?;
        Ok(Disk {
            file,
            read_only,
            sectors: len / SECTOR_SIZE,
            id: id.to_string(),
            rate: RateLimit::default(),
            control: None,
        })
    }

    /// Lets the control socket change its limit while the guest runs.
    pub fn with_control(mut self, cell: std::sync::Arc<crate::control::RateCell>) -> Self {
        self.control = Some(cell);
        self
    }

    /// Holds the guest's requests on this disk to `rate`.
    pub fn with_rate(mut self, rate: RateLimit) -> Self {
        self.rate = rate;
        self
    }
}

pub struct Block {
    disk: Option<Disk>,
    read_only: bool,
    /// capacity (u64), size_max (u32, unused), seg_max (u32).
    config: [u8; 16],
    worker: Option<WorkerHandle>,
    id: String,
}

impl Block {
    pub fn new(disk: Disk) -> Self {
        let mut config = [0u8; 16];
        config[..8].copy_from_slice(&disk.sectors.to_le_bytes());
        config[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
        Block {
            read_only: disk.read_only,
            id: disk.id.clone(),
            disk: Some(disk),
            config,
            worker: None,
        }
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        device_id::BLOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        VIRTIO_BLK_F_FLUSH | VIRTIO_BLK_F_SEG_MAX | if self.read_only { VIRTIO_BLK_F_RO } else { 0 }
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    /// A restore is given its drives anew, and a template snapshot's
    /// writable drive is an empty placeholder for each clone's own disk.
    fn config_differs_after_restore(&self) -> bool {
        true
    }

    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError> {
        // The disk moves into the worker; a reset gives it back through a
        // fresh open, which we do not support: one activation per boot.
        let disk = self
            .disk
            .take()
            .ok_or_else(|| ActivateError::Device(format!("block {}: activated twice", self.id)))?;
        let handle = worker::spawn(
            &format!("blk-{}", self.id),
            ThreadKind::Block,
            activation,
            BlockWorker::new(disk),
        )?;
        self.worker = Some(handle);
        Ok(())
    }

    fn reset(&mut self) {
        if let Some(mut w) = self.worker.take() {
            w.stop();
        }
    }
    fn worker_mut(&mut self) -> Option<&mut WorkerHandle> {
        self.worker.as_mut()
    }
}

pub struct BlockWorker {
    disk: Disk,
    errors: u32,
    limiter: Option<RateLimiter>,
    /// How the worker waits out its rate limit (replaced in tests).
    sleep: fn(Duration),
}

impl BlockWorker {
    pub fn new(disk: Disk) -> Self {
        let limiter =
            (!disk.rate.is_unlimited()).then(|| RateLimiter::new(disk.rate, Instant::now()));
        BlockWorker {
            disk,
            errors: 0,
            limiter,
            sleep: std::thread::sleep,
        }
    }

    /// Waits until the rate limit admits a request of `bytes`, then pays
    /// for it. The whole queue waits: that is the throttle.
    fn throttle(&mut self, bytes: u64) {
        if let Some(rate) = self.disk.control.as_ref().and_then(|c| c.take()) {
            // A fresh bucket at the new rate: the old debt is forgiven, the
            // new burst (one second's worth) starts full.
            self.disk.rate = rate;
            self.limiter = (!rate.is_unlimited()).then(|| RateLimiter::new(rate, Instant::now()));
        }
        if let Some(l) = &mut self.limiter {
            let d = l.wait(Instant::now());
            if !d.is_zero() {
                (self.sleep)(d);
            }
            l.charge(Instant::now(), bytes);
        }
    }

    fn guest_error(&mut self, what: impl std::fmt::Display) {
        self.errors = self.errors.saturating_add(1);
        if self.errors <= MAX_LOGGED_ERRORS {
            eprintln!("paddock-vmm: virtio-blk {}: {what}", self.disk.id);
        }
    }

    /// Serves every available request on `queue`.
    pub fn handle_queue(
        &mut self,
        mem: &GuestMemory,
        queue: &mut Queue,
        interrupt: &Interrupt,
    ) -> Result<(), DeviceFault> {
        let mut used_any = false;
        while let Some(chain) = queue.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            let used_len = match Chain::parse(chain, LIMITS) {
                Ok(c) => {
                    // Data bytes: all but the header and the status byte.
                    let bytes = c.readable_len().saturating_sub(HEADER_LEN)
                        + c.writable_len().saturating_sub(1);
                    self.throttle(bytes);
                    self.serve(mem, &c)
                }
                Err(e) => {
                    self.guest_error(format!("bad descriptor chain: {e}"));
                    0
                }
            };
            queue
                .add_used(mem, head, used_len)
                .map_err(|e| DeviceFault(format!("used ring: {e}")))?;
            used_any = true;
        }
        worker::check_avail_ring(queue, mem)?;
        if used_any {
            interrupt.signal_used_queue();
        }
        Ok(())
    }

    /// Serves one request; returns the number of bytes written to the guest.
    fn serve(&mut self, mem: &GuestMemory, c: &Chain) -> u32 {
        if c.readable_len() < HEADER_LEN || c.writable_len() < 1 {
            self.guest_error(format!(
                "request without header or status byte ({} readable, {} writable)",
                c.readable_len(),
                c.writable_len()
            ));
            if c.writable_len() >= 1 {
                let _ = c.write_at(mem, c.writable_len() - 1, &[VIRTIO_BLK_S_IOERR]);
                return 1;
            }
            return 0;
        }
        let mut header = [0u8; HEADER_LEN as usize];
        if c.read_at(mem, 0, &mut header).is_err() {
            return 0;
        }
        let kind = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let mut sector_bytes = [0u8; 8];
        sector_bytes.copy_from_slice(&header[8..16]);
        let sector = u64::from_le_bytes(sector_bytes);
        let status_at = c.writable_len() - 1;

        let (status, data_written) = match kind {
            VIRTIO_BLK_T_IN => self.read(mem, c, sector, status_at),
            VIRTIO_BLK_T_OUT => self.write(mem, c, sector),
            VIRTIO_BLK_T_FLUSH => match self.disk.file.sync_data() {
                Ok(()) => (VIRTIO_BLK_S_OK, 0),
                Err(e) => {
                    eprintln!("paddock-vmm: virtio-blk {}: flush: {e}", self.disk.id);
                    (VIRTIO_BLK_S_IOERR, 0)
                }
            },
            VIRTIO_BLK_T_GET_ID => {
                let mut id = [0u8; ID_LEN];
                let src = self.disk.id.as_bytes();
                let n = src.len().min(ID_LEN);
                id[..n].copy_from_slice(&src[..n]);
                let len = (status_at as usize).min(ID_LEN);
                match c.write_at(mem, 0, &id[..len]) {
                    Ok(()) => (VIRTIO_BLK_S_OK, len as u64),
                    Err(_) => (VIRTIO_BLK_S_IOERR, 0),
                }
            }
            other => {
                self.guest_error(format!("unsupported request type {other}"));
                (VIRTIO_BLK_S_UNSUPP, 0)
            }
        };
        if c.write_at(mem, status_at, &[status]).is_err() {
            return 0;
        }
        (data_written + 1) as u32
    }

    /// Byte offset of `len` bytes at `sector`, if the range is whole sectors
    /// inside the disk.
    fn range(&mut self, sector: u64, len: u64) -> Option<u64> {
        let ok = len % SECTOR_SIZE == 0
            && sector
                .checked_add(len / SECTOR_SIZE)
                .is_some_and(|end| end <= self.disk.sectors);
        if !ok {
            self.guest_error(format!(
                "request for {len} bytes at sector {sector} is outside the disk ({} sectors) or not whole sectors",
                self.disk.sectors
            ));
            return None;
        }
        Some(sector * SECTOR_SIZE)
    }

    fn read(&mut self, mem: &GuestMemory, c: &Chain, sector: u64, len: u64) -> (u8, u64) {
        let Some(start) = self.range(sector, len) else {
            return (VIRTIO_BLK_S_IOERR, 0);
        };
        let mut buf = vec![0u8; CHUNK.min(len as usize)];
        let mut done = 0u64;
        while done < len {
            let n = ((len - done) as usize).min(CHUNK);
            if let Err(e) = self.disk.file.read_exact_at(&mut buf[..n], start + done) {
                eprintln!("paddock-vmm: virtio-blk {}: read: {e}", self.disk.id);
                return (VIRTIO_BLK_S_IOERR, done);
            }
            if c.write_at(mem, done, &buf[..n]).is_err() {
                return (VIRTIO_BLK_S_IOERR, done);
            }
            done += n as u64;
        }
        (VIRTIO_BLK_S_OK, len)
    }

    fn write(&mut self, mem: &GuestMemory, c: &Chain, sector: u64) -> (u8, u64) {
        let len = c.readable_len() - HEADER_LEN;
        if self.disk.read_only {
            self.guest_error("write to a read-only disk refused");
            return (VIRTIO_BLK_S_IOERR, 0);
        }
        let Some(start) = self.range(sector, len) else {
            return (VIRTIO_BLK_S_IOERR, 0);
        };
        let mut buf = vec![0u8; CHUNK.min(len as usize)];
        let mut done = 0u64;
        while done < len {
            let n = ((len - done) as usize).min(CHUNK);
            if c.read_at(mem, HEADER_LEN + done, &mut buf[..n]).is_err() {
                return (VIRTIO_BLK_S_IOERR, 0);
            }
            if let Err(e) = self.disk.file.write_all_at(&buf[..n], start + done) {
                eprintln!("paddock-vmm: virtio-blk {}: write: {e}", self.disk.id);
                return (VIRTIO_BLK_S_IOERR, 0);
            }
            done += n as u64;
        }
        (VIRTIO_BLK_S_OK, 0)
    }
}

impl DeviceWorker for BlockWorker {
    fn queue_notified(&mut self, index: usize, ctx: &mut WorkerContext) -> Result<(), DeviceFault> {
        let WorkerContext {
            mem,
            queues,
            interrupt,
            ..
        } = ctx;
        match queues.get_mut(index) {
            Some(q) => self.handle_queue(mem, q, interrupt),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
#[path = "block_tests.rs"]
mod tests;
