//! A transport's part in pause, snapshot and restore.

use super::MmioTransport;
use crate::snapshot::state::{QueueState, TransportState};
use crate::virtio::status;
use crate::virtio::worker::PauseFailed;
use virtio_queue::{Queue, QueueT};

/// Status bits a driver can have set (DEVICE_NEEDS_RESET is ours, kept
/// apart in `needs_reset`).
const DRIVER_STATUS_BITS: u32 =
    status::ACKNOWLEDGE | status::DRIVER | status::DRIVER_OK | status::FEATURES_OK | status::FAILED;
/// The interrupt-status bits a device raises (used ring, config change).
const INTERRUPT_BITS: u32 = 0b11;

impl MmioTransport {
    /// Parks the device's worker (if the driver started it) between two
    /// events, keeping its queues' positions for `save`.
    pub fn pause(&mut self) -> Result<(), String> {
        if !self.activated || self.paused_queues.is_some() {
            return Ok(());
        }
        let worker = self
            .device
            .worker_mut()
            .ok_or("the device is active but has no worker")?;
        match worker.pause() {
            Ok(queues) => self.paused_queues = Some(queues),
            // A device that gave up on its driver has no worker and no
            // queues left: it is saved as the driver must find it anyway,
            // needing a reset.
            Err(PauseFailed::Stopped) if self.needs_reset.get() => {
                self.paused_queues = Some(Vec::new());
                self.faulted = true;
            }
            Err(e) => return Err(e.to_string()),
        }
        Ok(())
    }

    pub fn resume(&mut self) {
        self.faulted = false;
        if self.paused_queues.take().is_some() {
            if let Some(w) = self.device.worker_mut() {
                w.resume();
            }
        }
    }

    /// The transport's registers and queues; an active device must be
    /// paused first, since its worker owns the queues.
    pub fn save(&self) -> Result<TransportState, String> {
        if self.faulted {
            let fresh = self
                .fresh_queues()
                .iter()
                .map(|q| q.state().into())
                .collect();
            return Ok(TransportState {
                device_type: self.device.device_type(),
                status: self.status & !status::DRIVER_OK,
                driver_features: self.driver_features,
                device_features_sel: self.device_features_sel,
                driver_features_sel: self.driver_features_sel,
                queue_sel: self.queue_sel,
                interrupt_status: self.interrupt.status(),
                needs_reset: true,
                activated: false,
                queues: fresh,
            });
        }
        let queues: Vec<QueueState> = if self.activated {
            self.paused_queues
                .as_ref()
                .ok_or("the device is running; pause it first")?
                .iter()
                .map(|q| QueueState::from(*q))
                .collect()
        } else {
            self.queues.iter().map(|q| q.state().into()).collect()
        };
        Ok(TransportState {
            device_type: self.device.device_type(),
            status: self.status,
            driver_features: self.driver_features,
            device_features_sel: self.device_features_sel,
            driver_features_sel: self.driver_features_sel,
            queue_sel: self.queue_sel,
            interrupt_status: self.interrupt.status(),
            needs_reset: self.needs_reset.get(),
            activated: self.activated,
            queues,
        })
    }

    /// Puts a fresh transport back in the state `s` describes, activating
    /// the device on the restored queues if it was active. Everything in
    /// `s` is checked against this device first: a snapshot of another
    /// device, or one that widens what the driver negotiated, is refused.
    pub fn restore(&mut self, s: &TransportState) -> Result<(), String> {
        if self.activated || self.status != 0 {
            return Err("the transport is already in use".into());
        }
        let kind = self.device.device_type();
        if s.device_type != kind {
            return Err(format!(
                "the snapshot has a device of type {} here; this VM has type {kind}",
                s.device_type
            ));
        }
        let maxes = self.device.queue_max_sizes().to_vec();
        if s.queues.len() != maxes.len() {
            return Err(format!(
                "the snapshot has {} queues for a device with {}",
                s.queues.len(),
                maxes.len()
            ));
        }
        if s.status & !DRIVER_STATUS_BITS != 0 {
            return Err(format!("status {:#x} has bits no driver sets", s.status));
        }
        if s.driver_features & !self.device_features() != 0 {
            return Err(format!(
                "the driver's features {:#x} include some the device does not offer ({:#x})",
                s.driver_features,
                self.device_features()
            ));
        }
        let mut queues = Vec::with_capacity(maxes.len());
        for (index, (q, max)) in s.queues.iter().zip(maxes).enumerate() {
            if q.max_size != max {
                return Err(format!(
                    "queue {index}: maximum size {} where the device has {max}",
                    q.max_size
                ));
            }
            let queue = Queue::try_from(virtio_queue::QueueState::from(*q))
                .map_err(|e| format!("queue {index}: {e}"))?;
            if queue.ready() && !queue.is_valid(&self.mem) {
                return Err(format!("queue {index}: its rings lie outside guest memory"));
            }
            queues.push(queue);
        }
        let live = status::DRIVER_OK | status::FEATURES_OK;
        if s.activated && s.status & live != live {
            return Err("an active device whose driver never finished setting up".into());
        }
        self.queues = queues;
        self.status = s.status;
        self.driver_features = s.driver_features;
        self.device_features_sel = s.device_features_sel;
        self.driver_features_sel = s.driver_features_sel;
        self.queue_sel = s.queue_sel;
        self.interrupt
            .set_status(s.interrupt_status & INTERRUPT_BITS);
        if s.needs_reset {
            self.needs_reset.set();
        }
        if s.activated {
            self.device.restored();
            self.activate();
            if !self.activated {
                return Err("the device did not start on the restored queues".into());
            }
            // Buffers the driver posted before the snapshot may have had
            // their notification taken by the old worker: look at every
            // queue once.
            for evt in &self.queue_evts {
                let _ = evt.write(1);
            }
        }
        // The backing given for this restore may differ from the one the
        // driver last read the configuration of (a template's empty disk
        // swapped for a workspace's own): have the driver read it again.
        if s.activated && self.device.config_differs_after_restore() {
            self.config_generation = self.config_generation.wrapping_add(1);
            self.interrupt.signal_config_change();
        }
        // An interrupt raised just before the snapshot may not have reached
        // the saved interrupt controllers: raise it again (a spurious one
        // costs the driver a look at its queues).
        if s.interrupt_status & INTERRUPT_BITS != 0 {
            self.interrupt.retrigger();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{transport, w};
    use super::*;
    use std::sync::atomic::Ordering;

    /// A driver that negotiated and set up its queue, short of DRIVER_OK.
    fn negotiated() -> TransportState {
        let (mut t, _) = transport();
        w(&mut t, 0x024, 1); // driver features select: high word
        w(&mut t, 0x020, 1); // VERSION_1
        w(
            &mut t,
            0x070,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
        );
        w(&mut t, 0x038, 16);
        w(&mut t, 0x080, 0x1_0000);
        w(&mut t, 0x090, 0x1_1000);
        w(&mut t, 0x0a0, 0x1_2000);
        w(&mut t, 0x044, 1);
        t.save().expect("an idle transport saves")
    }

    #[test]
    fn a_saved_transport_comes_back_and_starts_its_device() {
        let mut s = negotiated();
        assert_eq!(s.queues[0].size, 16);
        assert!(s.queues[0].ready);
        let (mut t, activations) = transport();
        t.restore(&s).expect("restore");
        assert_eq!(t.save().expect("save"), s);
        assert_eq!(activations.load(Ordering::SeqCst), 0);

        s.status |= status::DRIVER_OK;
        s.activated = true;
        s.queues[0].next_avail = 3;
        let (mut t, activations) = transport();
        t.restore(&s).expect("restore an active device");
        assert_eq!(activations.load(Ordering::SeqCst), 1, "the device started");
        assert!(t.save().is_err(), "a running device must be paused to save");
        assert!(
            t.restore(&s).is_err(),
            "a transport in use is not restored over"
        );
    }

    /// A template's disk is restored with another backing: the driver is
    /// told to read the configuration again, with a new generation so a
    /// read in pieces cannot mix the two.
    #[test]
    fn a_device_whose_backing_may_differ_has_its_driver_reread_the_config() {
        let mut s = negotiated();
        s.status |= status::DRIVER_OK;
        s.activated = true;
        for differs in [false, true] {
            let (mut dev, _) = crate::virtio::testing::NullDevice::new();
            dev.config_differs = differs;
            let irq = crate::virtio::Interrupt::new(
                vmm_sys_util::eventfd::EventFd::new(libc::EFD_NONBLOCK).expect("eventfd"),
            );
            let mut t = MmioTransport::new(
                Box::new(dev),
                crate::virtio::testing::guest_memory(),
                irq.clone(),
            )
            .expect("transport");
            t.restore(&s).expect("restore");
            let mut gen = [0u8; 4];
            crate::devices::BusDevice::read(&mut t, 0x0fc, &mut gen);
            let changed = irq.status() & 2 != 0;
            assert_eq!(changed, differs, "config-change interrupt");
            assert_eq!(u32::from_le_bytes(gen), u32::from(differs), "generation");
        }
    }

    /// Each field a forged snapshot could use to widen what the guest has
    /// is checked against the device before anything is applied.
    #[test]
    fn forged_transport_states_are_refused() {
        let good = negotiated();
        type Forge = Box<dyn Fn(&mut TransportState)>;
        let cases: Vec<(&str, Forge)> = vec![
            ("type", Box::new(|s| s.device_type = 19)),
            ("queues", Box::new(|s| s.queues.push(s.queues[0]))),
            ("maximum size", Box::new(|s| s.queues[0].max_size = 1024)),
            ("bits no driver sets", Box::new(|s| s.status |= 0x40)),
            ("does not offer", Box::new(|s| s.driver_features |= 1 << 7)),
            (
                "outside guest memory",
                Box::new(|s| s.queues[0].used_ring = 0xffff_f000),
            ),
            ("never finished", Box::new(|s| s.activated = true)),
        ];
        for (want, forge) in cases {
            let mut s = good.clone();
            forge(&mut s);
            let (mut t, activations) = transport();
            let e = t.restore(&s).expect_err(want);
            assert!(e.contains(want), "{want}: {e}");
            assert_eq!(t.status, 0, "{want}: nothing applied");
            assert_eq!(activations.load(Ordering::SeqCst), 0);
        }
    }
}
