use super::client::{ClientTlsConfig, Target};
use super::*;

fn pem_files(dir: &std::path::Path) -> (String, String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (c, k) = (dir.join("c.pem"), dir.join("k.pem"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    let other = dir.join("other.key");
    std::fs::write(&other, rcgen::KeyPair::generate().unwrap().serialize_pem()).unwrap();
    let s = |p: std::path::PathBuf| p.to_str().unwrap().to_string();
    (s(c), s(k), s(other))
}

#[test]
fn versions_default_to_1_2_through_1_3_and_refuse_old_ones_by_key() {
    assert_eq!(versions("tls", None, None).unwrap().len(), 2);
    assert_eq!(
        versions("tls", Some("1.3"), None).unwrap(),
        vec![&rustls::version::TLS13]
    );
    for old in ["1.0", "1.1"] {
        let e = versions("x.tls", Some(old), None).unwrap_err();
        assert_eq!(e.path, "x.tls.min_version");
        assert!(e.message.contains("not supported"), "{e}");
    }
    assert_eq!(
        versions("tls", Some("1.3"), Some("1.2")).unwrap_err().path,
        "tls.min_version"
    );
    assert_eq!(
        versions("tls", None, Some("2")).unwrap_err().path,
        "tls.max_version"
    );
}

#[test]
fn go_suite_names_map_onto_rustls_suites() {
    let p = provider(
        "tls",
        &["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".to_string()],
    )
    .unwrap();
    let names: Vec<String> = p
        .cipher_suites
        .iter()
        .map(|s| format!("{:?}", s.suite()))
        .collect();
    // The one TLS 1.2 suite asked for, and every TLS 1.3 suite (as Go).
    assert!(names.contains(&"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".to_string()));
    assert!(!names.iter().any(|n| n.contains("ECDSA")), "{names:?}");
    assert_eq!(names.iter().filter(|n| n.starts_with("TLS13")).count(), 3);
    let only13 = provider("tls", &["TLS_AES_256_GCM_SHA384".to_string()]).unwrap();
    assert_eq!(only13.cipher_suites.len(), 1);
    let e = provider(
        "tls",
        &[
            "TLS_AES_128_GCM_SHA256".into(),
            "TLS_RSA_WITH_AES_128_CBC_SHA".into(),
        ],
    )
    .unwrap_err();
    assert_eq!(e.path, "tls.cipher_suites[1]");
}

#[test]
fn endpoints_resolve_by_scheme_and_otelcols_insecure_rule() {
    let plain = ClientTlsConfig {
        insecure: true,
        ..Default::default()
    };
    let t = |tls: &ClientTlsConfig, e: &str| tls.resolve("endpoint", e);
    assert_eq!(
        t(&plain, "tempo:4317").unwrap(),
        Target {
            url: "http://tempo:4317".into(),
            tls: false
        }
    );
    let default = ClientTlsConfig::default();
    assert!(t(&default, "tempo:4317").unwrap().tls);
    assert!(t(&default, "https://tempo:4318/").unwrap().tls);
    assert_eq!(
        t(&default, "https://tempo:4318/").unwrap().url,
        "https://tempo:4318"
    );
    assert!(!t(&default, "http://tempo:4318").unwrap().tls);
    assert_eq!(t(&default, "").unwrap_err().path, "endpoint");
    assert_eq!(t(&default, "ftp://x").unwrap_err().path, "endpoint");

    let dir = tempfile::tempdir().unwrap();
    let (cert, _, _) = pem_files(dir.path());
    // insecure with a CA is still TLS (configtls).
    let with_ca = ClientTlsConfig {
        insecure: true,
        ca_file: Some(cert.clone()),
        ..Default::default()
    };
    assert!(t(&with_ca, "tempo:4317").unwrap().tls);
    // A TLS key on a plaintext endpoint is refused, not ignored.
    let e = t(&with_ca, "http://tempo:4318").unwrap_err();
    assert_eq!(e.path, "tls.ca_file");
    let skip = ClientTlsConfig {
        insecure: true,
        insecure_skip_verify: true,
        ..Default::default()
    };
    assert_eq!(
        t(&skip, "tempo:4317").unwrap_err().path,
        "tls.insecure_skip_verify"
    );
}

#[test]
fn files_are_read_and_checked_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, other_key) = pem_files(dir.path());
    let cfg = |ca: Option<&str>, c: Option<&str>, k: Option<&str>| ClientTlsConfig {
        ca_file: ca.map(str::to_string),
        cert_file: c.map(str::to_string),
        key_file: k.map(str::to_string),
        ..Default::default()
    };
    let err = |c: ClientTlsConfig| c.rustls(&[]).unwrap_err();
    cfg(Some(&cert), Some(&cert), Some(&key))
        .rustls(&[])
        .unwrap();
    let e = err(cfg(Some("/nonexistent/ca.pem"), None, None));
    assert_eq!(e.path, "tls.ca_file");
    assert!(e.message.contains("/nonexistent/ca.pem"), "{e}");
    assert_eq!(err(cfg(Some(&key), None, None)).path, "tls.ca_file");
    assert_eq!(err(cfg(None, Some(&cert), None)).path, "tls.key_file");
    assert_eq!(err(cfg(None, None, Some(&key))).path, "tls.cert_file");
    assert_eq!(err(cfg(None, Some(&key), Some(&key))).path, "tls.cert_file");
    assert_eq!(
        err(cfg(None, Some(&cert), Some(&cert))).path,
        "tls.key_file"
    );
    let mismatch = err(cfg(None, Some(&cert), Some(&other_key)));
    assert_eq!(mismatch.path, "tls.key_file");
    assert!(mismatch.message.contains("does not fit"), "{mismatch}");
    let both = ClientTlsConfig {
        ca_file: Some(cert.clone()),
        ca_pem: Some(std::fs::read_to_string(&cert).unwrap()),
        ..Default::default()
    };
    assert_eq!(err(both).path, "tls.ca_pem");
}
