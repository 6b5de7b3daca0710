//! A tiny DNS server for tests: answers A queries for any name with the
//! addresses it is told, and AAAA queries with none. The `loadbalancing`
//! exporter's `resolver.dns.nameserver` points at it, so a test can change
//! a fleet's membership while data flows.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

/// A running server; its answer can be changed at any time.
pub struct DnsServer {
    /// Where it listens (UDP).
    pub addr: SocketAddr,
    answer: Arc<Mutex<Vec<Ipv4Addr>>>,
    task: tokio::task::JoinHandle<()>,
}

impl DnsServer {
    /// Starts answering with `ips`.
    pub async fn start(ips: &[Ipv4Addr]) -> DnsServer {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let answer = Arc::new(Mutex::new(ips.to_vec()));
        let current = answer.clone();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            loop {
                let Ok((len, from)) = sock.recv_from(&mut buf).await else {
                    return;
                };
                let q = &buf[..len];
                // Header (12) + name + qtype + qclass.
                let mut i = 12;
                while i < q.len() && q[i] != 0 {
                    i += 1 + q[i] as usize;
                }
                let end = i + 5;
                if end > q.len() {
                    continue;
                }
                let qtype = u16::from_be_bytes([q[i + 1], q[i + 2]]);
                let ips = if qtype == 1 {
                    current.lock().unwrap().clone()
                } else {
                    Vec::new()
                };
                let mut r = q[..end].to_vec();
                r[2] = 0x81; // response, recursion desired
                r[3] = 0x80; // recursion available, no error
                r[6..8].copy_from_slice(&(ips.len() as u16).to_be_bytes());
                for ip in ips {
                    r.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4]);
                    r.extend_from_slice(&ip.octets());
                }
                let _ = sock.send_to(&r, from).await;
            }
        });
        DnsServer { addr, answer, task }
    }

    /// Answers with `ips` from now on.
    pub fn set(&self, ips: &[Ipv4Addr]) {
        *self.answer.lock().unwrap() = ips.to_vec();
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
