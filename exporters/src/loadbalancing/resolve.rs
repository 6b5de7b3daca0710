//! Where the backends are: a static list (kept as written, never dropping a
//! host, as otelcol), or a DNS name resolved every `interval`, its answers
//! written `ip:port` (IPv6 in brackets) as otelcol writes them.

use std::net::SocketAddr;
use std::sync::Arc;

use pipeline::component::ConfigError;

use super::config::{DnsResolver, LoadBalancingConfig};
use super::Shared;

/// An address as otelcol's DNS resolver writes it.
fn endpoint(a: &SocketAddr) -> String {
    match a {
        SocketAddr::V4(v) => format!("{}:{}", v.ip(), v.port()),
        SocketAddr::V6(v) => format!("[{}]:{}", v.ip(), v.port()),
    }
}

async fn lookup(d: &DnsResolver) -> Result<Vec<String>, String> {
    let port: u16 = d.port.parse().map_err(|_| "bad port".to_string())?;
    let found: Vec<SocketAddr> = match d.nameserver {
        Some(server) => super::dns::resolve(server, &d.hostname, d.timeout)
            .await?
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect(),
        None => tokio::time::timeout(
            d.timeout,
            tokio::net::lookup_host((d.hostname.as_str(), port)),
        )
        .await
        .map_err(|_| format!("resolving {} took over {:?}", d.hostname, d.timeout))?
        .map_err(|e| format!("resolving {}: {e}", d.hostname))?
        .collect(),
    };
    let mut eps: Vec<String> = found.iter().map(endpoint).collect();
    eps.sort();
    eps.dedup();
    Ok(eps)
}

/// Sets the first members and, for DNS, keeps them current until the
/// exporter is gone.
pub(crate) fn start(shared: &Arc<Shared>, cfg: &LoadBalancingConfig) -> Result<(), ConfigError> {
    if let Some(s) = &cfg.resolver.static_list {
        shared.set_members(&s.hostnames)?;
        return Ok(());
    }
    let Some(d) = cfg.resolver.dns.clone() else {
        return Ok(());
    };
    let weak = Arc::downgrade(shared);
    let id = shared.ctx.id.clone();
    tokio::spawn(async move {
        let mut first = true;
        loop {
            if !first {
                tokio::time::sleep(d.interval).await;
            }
            first = false;
            let Some(shared) = weak.upgrade() else { return };
            match lookup(&d).await {
                // An empty answer keeps the ring: a DNS hiccup must not
                // leave every trace without an owner.
                Ok(eps) if eps.is_empty() => {
                    tracing::warn!(exporter = %id, hostname = %d.hostname, "DNS returned no backend; keeping the current ring")
                }
                Ok(eps) => {
                    if let Err(e) = shared.set_members(&eps) {
                        tracing::error!(exporter = %id, error = %e, "could not build a backend exporter");
                    }
                }
                Err(e) => {
                    tracing::warn!(exporter = %id, error = %e, "DNS resolution failed; keeping the current ring")
                }
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_written_as_otelcol_writes_them() {
        assert_eq!(endpoint(&"10.0.0.1:4317".parse().unwrap()), "10.0.0.1:4317");
        assert_eq!(endpoint(&"[::1]:4317".parse().unwrap()), "[::1]:4317");
    }
}
