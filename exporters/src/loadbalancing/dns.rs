//! A minimal DNS client for `resolver.dns.nameserver` (ours): asks one
//! server over UDP for a name's A and AAAA records, for deployments (and
//! tests) that must not depend on the system resolver.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// Record types asked for.
const A: u16 = 1;
const AAAA: u16 = 28;

fn query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, String> {
    let mut q = Vec::with_capacity(32 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD; one question
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("{name:?} is not a valid DNS name"));
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes()); // IN
    Ok(q)
}

/// Skips a (possibly compressed) name at `i`; returns the index after it.
fn skip_name(m: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let len = *m.get(i)? as usize;
        match len {
            0 => return Some(i + 1),
            l if l & 0xC0 == 0xC0 => return Some(i + 2),
            l => i += 1 + l,
        }
    }
}

fn read_u16(m: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*m.get(i)?, *m.get(i + 1)?]))
}

/// The addresses in an answer to query `id`.
fn answers(m: &[u8], id: u16) -> Option<Vec<IpAddr>> {
    if read_u16(m, 0)? != id || m.get(2)? & 0x80 == 0 {
        return None;
    }
    let rcode = m.get(3)? & 0x0F;
    if rcode != 0 {
        return Some(Vec::new());
    }
    let (qd, an) = (read_u16(m, 4)?, read_u16(m, 6)?);
    let mut i = 12;
    for _ in 0..qd {
        i = skip_name(m, i)? + 4;
    }
    let mut out = Vec::new();
    for _ in 0..an {
        i = skip_name(m, i)?;
        let (t, len) = (read_u16(m, i)?, read_u16(m, i + 8)? as usize);
        let data = m.get(i + 10..i + 10 + len)?;
        match (t, len) {
            (A, 4) => out.push(IpAddr::V4(Ipv4Addr::new(
                data[0], data[1], data[2], data[3],
            ))),
            (AAAA, 16) => {
                let b: [u8; 16] = data.try_into().ok()?;
                out.push(IpAddr::V6(Ipv6Addr::from(b)));
            }
            _ => {}
        }
        i += 10 + len;
    }
    Some(out)
}

/// The A and AAAA addresses of `name` from `server`, within `timeout`.
pub async fn resolve(
    server: SocketAddr,
    name: &str,
    timeout: Duration,
) -> Result<Vec<IpAddr>, String> {
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let sock = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| e.to_string())?;
    sock.connect(server).await.map_err(|e| e.to_string())?;
    let mut all = Vec::new();
    for (n, qtype) in [A, AAAA].into_iter().enumerate() {
        let id = rand::random::<u16>().wrapping_add(n as u16);
        sock.send(&query(id, name, qtype)?)
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 1500];
        let got = tokio::time::timeout(timeout, async {
            loop {
                let len = sock.recv(&mut buf).await?;
                // A late answer to an earlier query is skipped.
                if let Some(a) = answers(&buf[..len], id) {
                    return Ok::<_, std::io::Error>(a);
                }
            }
        })
        .await
        .map_err(|_| format!("{server} did not answer within {timeout:?}"))?
        .map_err(|e| e.to_string())?;
        all.extend(got);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_through_compressed_names() {
        let q = query(0x1234, "fleet.test", A).unwrap();
        let mut m = q.clone();
        m[2] = 0x81; // a response
        m[6..8].copy_from_slice(&2u16.to_be_bytes()); // two answers
        for ip in [[10, 0, 0, 1], [10, 0, 0, 2]] {
            m.extend_from_slice(&[0xC0, 12]); // the question's name
            m.extend_from_slice(&A.to_be_bytes());
            m.extend_from_slice(&1u16.to_be_bytes());
            m.extend_from_slice(&30u32.to_be_bytes());
            m.extend_from_slice(&4u16.to_be_bytes());
            m.extend_from_slice(&ip);
        }
        let got = answers(&m, 0x1234).unwrap();
        assert_eq!(
            got,
            vec![IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2])]
        );
        assert!(answers(&m, 0x9999).is_none(), "another query's answer");
        assert!(answers(&m[..20], 0x1234).is_none(), "truncated");
        assert!(query(1, "a..b", A).is_err());
    }
}
