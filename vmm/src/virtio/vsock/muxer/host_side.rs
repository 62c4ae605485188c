//! The host side of guest connections: accepting a host process's
//! connection and reading its CONNECT line, reading what it sends, its
//! hang-up, and writing to it what the guest sent within its credit.

use super::*;

impl Muxer {
    /// Writes buffered guest bytes to the host socket; closes our write side
    /// once the guest is done and everything is out.
    pub(super) fn flush_to_host(&mut self, token: u64, ctx: &WorkerContext) {
        let Some(c) = self.conns.get_mut(&token) else {
            return;
        };
        let mut failed = false;
        while !c.to_host.is_empty() {
            let (a, _) = c.to_host.as_slices();
            match c.stream.write(a) {
                Ok(0) => {
                    failed = true;
                    break;
                }
                Ok(n) => {
                    c.to_host.drain(..n);
                    let control = n.min(c.to_host_control);
                    c.to_host_control -= control;
                    c.fwd_cnt = c.fwd_cnt.wrapping_add((n - control) as u32);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            self.reset(token, ctx);
            return;
        }
        if c.to_host.is_empty() && c.guest_done_sending {
            let _ = c.stream.shutdown(std::net::Shutdown::Write);
            if c.close_when_drained {
                self.reset(token, ctx);
                return;
            }
        }
        let unreported = c.fwd_cnt.wrapping_sub(c.last_fwd_cnt_sent);
        if unreported >= BUF_ALLOC / 4 {
            let (l, p) = (c.local_port, c.peer_port);
            let h = self.header(OP_CREDIT_UPDATE, l, p);
            self.send_control(h);
        }
        self.update_interest(token, ctx);
    }

    // ---- host -> guest ----

    pub(super) fn accept(&mut self, ctx: &WorkerContext) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if self.conns.len() >= MAX_CONNECTIONS || stream.set_nonblocking(true).is_err()
                    {
                        continue;
                    }
                    self.add_conn(Conn::new(stream, State::AwaitConnectLine), ctx);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
    }

    pub(super) fn host_readable(&mut self, token: u64, ctx: &WorkerContext) {
        let Some(c) = self.conns.get_mut(&token) else {
            return;
        };
        match c.state {
            State::AwaitConnectLine => self.read_connect_line(token, ctx),
            State::Connecting => {}
            State::Established => {
                let want = (c.peer_credit() as usize).min(MAX_PKT_PAYLOAD);
                if want == 0 || !c.to_guest.is_empty() || c.host_eof {
                    return;
                }
                let mut buf = vec![0u8; want];
                match c.stream.read(&mut buf) {
                    Ok(0) => {
                        c.host_eof = true;
                        let (l, p) = (c.local_port, c.peer_port);
                        let h = Header {
                            flags: SHUTDOWN_SEND,
                            ..self.header(OP_SHUTDOWN, l, p)
                        };
                        self.send_control(h);
                    }
                    Ok(n) => {
                        buf.truncate(n);
                        c.to_guest = buf;
                    }
                    Err(e)
                        if e.kind() == ErrorKind::WouldBlock
                            || e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => self.reset(token, ctx),
                }
            }
        }
        self.update_interest(token, ctx);
    }

    pub(super) fn host_hung_up(&mut self, token: u64, ctx: &WorkerContext) {
        if let Some(c) = self.conns.get_mut(&token) {
            if c.state != State::Established {
                return self.remove(token, ctx);
            }
            c.host_hup = true;
        }
        self.host_readable(token, ctx);
    }

    pub(super) fn read_connect_line(&mut self, token: u64, ctx: &WorkerContext) {
        let Some(c) = self.conns.get_mut(&token) else {
            return;
        };
        let mut buf = [0u8; MAX_CONNECT_LINE];
        let n = match c.stream.read(&mut buf) {
            Ok(0) => return self.remove(token, ctx),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                return
            }
            Err(_) => return self.remove(token, ctx),
        };
        c.line.extend_from_slice(&buf[..n]);
        let Some(nl) = c.line.iter().position(|&b| b == b'\n') else {
            if c.line.len() > MAX_CONNECT_LINE {
                self.remove(token, ctx);
            }
            return;
        };
        let port = std::str::from_utf8(&c.line[..nl])
            .ok()
            .and_then(|l| l.strip_prefix("CONNECT "))
            .and_then(|p| p.trim().parse::<u32>().ok());
        let Some(port) = port else {
            let _ = c.stream.write_all(b"ERR expected \"CONNECT <port>\"\n");
            return self.remove(token, ctx);
        };
        // Anything after the line is already stream data for the guest.
        let rest = c.line.split_off(nl + 1);
        c.line.clear();
        c.to_guest = rest;
        let local = self.alloc_host_port();
        let Some(c) = self.conns.get_mut(&token) else {
            return;
        };
        c.local_port = local;
        c.peer_port = port;
        c.state = State::Connecting;
        self.by_ports.insert((local, port), token);
        let h = self.header(OP_REQUEST, local, port);
        self.send_control(h);
        self.update_interest(token, ctx);
    }
}
