//! Toward the guest: filling its receive queue with control packets first,
//! then data within the credit it granted, and asking for credit when a
//! connection stalls.

use super::*;

impl Muxer {
    /// Fills guest rx buffers: control packets first, then stream data.
    /// Returns whether the rx queue ran dry.
    pub(super) fn process_rx(&mut self, ctx: &mut WorkerContext) -> Result<(), DeviceFault> {
        let mut used_any = false;
        let result = self.fill_rx(ctx, &mut used_any);
        if used_any {
            ctx.interrupt.signal_used_queue();
        }
        result
    }

    pub(super) fn pop_rx(ctx: &mut WorkerContext) -> Result<Option<(u16, Chain)>, DeviceFault> {
        loop {
            let mem = &ctx.mem;
            let q = &mut ctx.queues[RX_QUEUE];
            let Some(chain) = q.pop_descriptor_chain(mem) else {
                check_avail_ring(q, mem)?;
                return Ok(None);
            };
            let head = chain.head_index();
            match Chain::parse(chain, LIMITS) {
                Ok(c) if c.writable_len() >= HEADER_LEN as u64 => return Ok(Some((head, c))),
                _ => {
                    // Unusable buffer: give it back empty and try the next.
                    q.add_used(mem, head, 0)
                        .map_err(|e| DeviceFault(format!("rx used ring: {e}")))?;
                }
            }
        }
    }

    pub(super) fn fill_rx(
        &mut self,
        ctx: &mut WorkerContext,
        used_any: &mut bool,
    ) -> Result<(), DeviceFault> {
        if !self.send_controls(ctx, used_any)? {
            return Ok(());
        }
        self.send_data(ctx, used_any)?;
        // Sending data may have queued a credit request.
        self.send_controls(ctx, used_any)?;
        Ok(())
    }

    /// Puts queued control packets into rx buffers; false if buffers ran out.
    pub(super) fn send_controls(
        &mut self,
        ctx: &mut WorkerContext,
        used_any: &mut bool,
    ) -> Result<bool, DeviceFault> {
        while let Some(&h) = self.control.front() {
            let Some((head, chain)) = Self::pop_rx(ctx)? else {
                return Ok(false);
            };
            let written = match chain.write_at(&ctx.mem, 0, &h.to_bytes()) {
                Ok(()) => HEADER_LEN as u32,
                Err(_) => 0,
            };
            self.control.pop_front();
            ctx.queues[RX_QUEUE]
                .add_used(&ctx.mem, head, written)
                .map_err(|e| DeviceFault(format!("rx used ring: {e}")))?;
            *used_any = true;
        }
        Ok(true)
    }

    pub(super) fn send_data(
        &mut self,
        ctx: &mut WorkerContext,
        used_any: &mut bool,
    ) -> Result<(), DeviceFault> {
        let ready: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.state == State::Established && !c.to_guest.is_empty())
            .map(|(t, _)| *t)
            .collect();
        for token in ready {
            while let Some(c) = self.conns.get_mut(&token) {
                let credit = c.peer_credit() as usize;
                if c.to_guest.is_empty() {
                    break;
                }
                if credit == 0 {
                    break;
                }
                let Some((head, chain)) = Self::pop_rx(ctx)? else {
                    return Ok(());
                };
                let Some(c) = self.conns.get_mut(&token) else {
                    break;
                };
                let room = (chain.writable_len() as usize - HEADER_LEN).min(MAX_PKT_PAYLOAD);
                let n = c.to_guest.len().min(credit).min(room);
                let h = Header {
                    src_cid: HOST_CID,
                    dst_cid: self.guest_cid,
                    src_port: c.local_port,
                    dst_port: c.peer_port,
                    len: n as u32,
                    type_: TYPE_STREAM,
                    op: OP_RW,
                    flags: 0,
                    buf_alloc: BUF_ALLOC,
                    fwd_cnt: c.fwd_cnt,
                };
                let ok = chain.write_at(&ctx.mem, 0, &h.to_bytes()).is_ok()
                    && chain
                        .write_at(&ctx.mem, HEADER_LEN as u64, &c.to_guest[..n])
                        .is_ok();
                let written = if ok {
                    c.to_guest.drain(..n);
                    c.tx_cnt = c.tx_cnt.wrapping_add(n as u32);
                    c.last_fwd_cnt_sent = c.fwd_cnt;
                    (HEADER_LEN + n) as u32
                } else {
                    0
                };
                ctx.queues[RX_QUEUE]
                    .add_used(&ctx.mem, head, written)
                    .map_err(|e| DeviceFault(format!("rx used ring: {e}")))?;
                *used_any = true;
            }
            self.request_credit_if_stalled(token);
            self.update_interest(token, ctx);
        }
        Ok(())
    }

    /// Out of credit while the host may have more to say: ask the guest for
    /// an update rather than rely on it volunteering one.
    pub(super) fn request_credit_if_stalled(&mut self, token: u64) {
        let Some(c) = self.conns.get_mut(&token) else {
            return;
        };
        if c.peer_credit() == 0 && !c.host_eof && !c.credit_requested {
            c.credit_requested = true;
            let (l, p) = (c.local_port, c.peer_port);
            let h = self.header(OP_CREDIT_REQUEST, l, p);
            self.control.push_back(h);
        }
    }

    /// Host sockets whose data is already buffered get it into the guest;
    /// then sockets may be read again.
    pub(super) fn pump(&mut self, ctx: &mut WorkerContext) -> Result<(), DeviceFault> {
        self.process_rx(ctx)?;
        let tokens: Vec<u64> = self.conns.keys().copied().collect();
        for &t in &tokens {
            let hung_up = self.conns.get(&t).is_some_and(|c| c.host_hup);
            if hung_up {
                self.host_readable(t, ctx);
            }
            self.update_interest(t, ctx);
        }
        if tokens
            .iter()
            .any(|t| self.conns.get(t).is_some_and(|c| c.host_hup))
        {
            self.process_rx(ctx)?;
        }
        Ok(())
    }
}
