//! Certificates made by the test itself: a CA, a server certificate for
//! localhost / 127.0.0.1, a client certificate, all written as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A CA that can sign server and client certificates.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub pem: String,
}

impl Ca {
    /// A new self-signed CA named `name`.
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let cert = p.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(p, key),
        }
    }

    /// A leaf certificate for `names`, with common name `cn`: (cert, key) PEM.
    pub fn leaf(&self, cn: &str, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut p = CertificateParams::new(names).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// PEM files for a TLS test: `ca.pem`, `server.pem`/`server.key`,
/// `client.pem`/`client.key` (signed by the CA) and `other-ca.pem`.
pub struct Pki {
    /// Where the files are.
    pub dir: PathBuf,
    /// The CA that signed the files.
    pub ca: Ca,
}

impl Pki {
    /// Writes a fresh set into `dir`.
    pub fn write(dir: &Path) -> Pki {
        let ca = Ca::new("observatory test CA");
        let (cert, key) = ca.leaf("server", &["localhost", "127.0.0.1"]);
        std::fs::write(dir.join("ca.pem"), &ca.pem).unwrap();
        std::fs::write(dir.join("server.pem"), cert).unwrap();
        std::fs::write(dir.join("server.key"), key).unwrap();
        let (cert, key) = ca.leaf("client-a", &["client-a"]);
        std::fs::write(dir.join("client.pem"), cert).unwrap();
        std::fs::write(dir.join("client.key"), key).unwrap();
        std::fs::write(dir.join("other-ca.pem"), Ca::new("someone else").pem).unwrap();
        Pki {
            dir: dir.to_path_buf(),
            ca,
        }
    }

    /// The path of one of the files, as a string for configs.
    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_string()
    }
}
