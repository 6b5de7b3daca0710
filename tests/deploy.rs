//! The deployment files agree with the Observatory configs they run. The
//! full compose stack (deploy/stack) mounts files that exist, publishes
//! the ports its configs listen on, and its Observatory, Prometheus and
//! Grafana point at each other's service names and ports. The fleet's: the
//! Kubernetes manifests have the kinds the layout needs, expose the ports
//! the config listens on, probe the health_check port, and the headless
//! Service the DNS resolver reads has the peer port; the Compose file names
//! each instance as the ring will see it.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_yaml::Value;

fn repo(rel: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn docs(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// The port in an endpoint value, default included (`${env:X:-0.0.0.0:4317}`).
fn port_of(v: &Value) -> u64 {
    let s = v.as_str().unwrap().trim_end_matches('}');
    s.rsplit(':').next().unwrap().parse().unwrap()
}

fn get<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| &v[k])
}

#[test]
fn kubernetes_manifests_match_the_one_tier_config() {
    let cfg: Value = serde_yaml::from_str(&repo("deploy/fleet/one-tier.yaml")).unwrap();
    let grpc = port_of(get(&cfg, "receivers.otlp.protocols.grpc.endpoint"));
    let http = port_of(get(&cfg, "receivers.otlp.protocols.http.endpoint"));
    let peer = port_of(get(&cfg, "receivers.otlp/peer.protocols.grpc.endpoint"));
    let health = port_of(get(&cfg, "extensions.health_check.endpoint"));
    let lb = get(&cfg, "exporters.loadbalancing");
    assert_eq!(
        lb["resolver"]["dns"]["port"].as_u64(),
        Some(peer),
        "the ring's port is the peer receiver's"
    );
    assert_eq!(lb["local"]["receiver"].as_str(), Some("otlp/peer"));

    let all = docs(&repo("deploy/fleet/k8s/one-tier.yaml"));
    let kinds: BTreeSet<&str> = all.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "Deployment",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
            "Service"
        ]
        .into_iter()
        .collect()
    );
    let of = |kind: &str, name: &str| {
        all.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    };
    let headless = of("Service", "observatory-peers");
    assert_eq!(headless["spec"]["clusterIP"].as_str(), Some("None"));
    assert_eq!(headless["spec"]["ports"][0]["port"].as_u64(), Some(peer));
    let front = of("Service", "observatory");
    let front_ports: BTreeSet<u64> = front["spec"]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_u64().unwrap())
        .collect();
    assert_eq!(front_ports, [grpc, http].into_iter().collect());

    let pod = &of("Deployment", "observatory")["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let ports: BTreeSet<u64> = c["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| p["containerPort"].as_u64().unwrap())
        .collect();
    for p in [grpc, http, peer, health] {
        assert!(ports.contains(&p), "container port {p} missing");
    }
    assert_eq!(
        c["readinessProbe"]["httpGet"]["port"].as_u64(),
        Some(health)
    );
    let env = |name: &str| {
        c["env"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("env {name}"))
    };
    assert_eq!(
        env("OBSERVATORY_PEERS_DNS")["value"].as_str(),
        Some("observatory-peers")
    );
    assert_eq!(
        env("OBSERVATORY_SELF")["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        Some("status.podIP")
    );
    // The config file the container reads is the ConfigMap kustomize makes
    // from one-tier.yaml.
    let kust: Value = serde_yaml::from_str(&repo("deploy/fleet/kustomization.yaml")).unwrap();
    let gen = &kust["configMapGenerator"][0];
    assert_eq!(pod["volumes"][0]["configMap"]["name"], gen["name"]);
    let mount = c["volumeMounts"][0]["mountPath"].as_str().unwrap();
    let file = gen["files"][0].as_str().unwrap();
    assert_eq!(c["args"][1].as_str().unwrap(), format!("{mount}/{file}"));
    assert!(kust["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|r| r == "k8s/one-tier.yaml"));
    assert!(of("PodDisruptionBudget", "observatory")["spec"]["maxUnavailable"].as_u64() == Some(1));
    let hpa = of("HorizontalPodAutoscaler", "observatory");
    assert_eq!(
        hpa["spec"]["metrics"][0]["resource"]["name"].as_str(),
        Some("cpu")
    );
}

#[test]
fn compose_names_each_instance_as_the_ring_sees_it() {
    let c: Value = serde_yaml::from_str(&repo("deploy/fleet/compose.yaml")).unwrap();
    for i in 1..=3 {
        let s = &c["services"][format!("observatory-{i}").as_str()];
        let ip = s["networks"]["fleet"]["ipv4_address"].as_str().unwrap();
        assert_eq!(s["environment"]["OBSERVATORY_SELF"].as_str(), Some(ip));
        let dns = s["environment"]["OBSERVATORY_PEERS_DNS"].as_str().unwrap();
        assert!(s["networks"]["fleet"]["aliases"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|a| a == dns));
        assert_eq!(
            c["services"]["haproxy"]["environment"][format!("OBS_{i}").as_str()].as_str(),
            Some(format!("observatory-{i}:4317").as_str())
        );
    }
}

/// The container ports a Deployment's first container declares.
fn container_ports(deployment: &Value) -> BTreeSet<u64> {
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| p["containerPort"].as_u64().unwrap())
        .collect()
}

#[test]
fn kubernetes_manifests_match_the_two_tier_configs() {
    let gw: Value = serde_yaml::from_str(&repo("deploy/fleet/two-tier-gateway.yaml")).unwrap();
    let sm: Value = serde_yaml::from_str(&repo("deploy/fleet/two-tier-sampler.yaml")).unwrap();
    let gw_grpc = port_of(get(&gw, "receivers.otlp.protocols.grpc.endpoint"));
    let gw_http = port_of(get(&gw, "receivers.otlp.protocols.http.endpoint"));
    let sm_grpc = port_of(get(&sm, "receivers.otlp.protocols.grpc.endpoint"));
    let lb = get(&gw, "exporters.loadbalancing");
    assert_eq!(
        lb["resolver"]["dns"]["port"].as_u64(),
        Some(sm_grpc),
        "the gateways' ring port is the samplers' receiver"
    );
    assert!(
        lb["local"].is_null(),
        "a gateway is not on the samplers' ring"
    );

    let all = docs(&repo("deploy/fleet/k8s/two-tier.yaml"));
    let of = |kind: &str, name: &str| {
        all.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    };
    for name in ["observatory-gateway", "observatory-sampler"] {
        let d = of("Deployment", name);
        let app = &d["spec"]["template"]["metadata"]["labels"]["app"];
        assert_eq!(app.as_str(), Some(name));
        let pdb = of("PodDisruptionBudget", name);
        assert_eq!(&pdb["spec"]["selector"]["matchLabels"]["app"], app);
        let hpa = of("HorizontalPodAutoscaler", name);
        assert_eq!(hpa["spec"]["scaleTargetRef"]["name"].as_str(), Some(name));
        assert_eq!(
            hpa["spec"]["metrics"][0]["resource"]["name"].as_str(),
            Some("cpu")
        );
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        let cfg = if name.ends_with("gateway") { &gw } else { &sm };
        let health = port_of(get(cfg, "extensions.health_check.endpoint"));
        assert_eq!(
            c["readinessProbe"]["httpGet"]["port"].as_u64(),
            Some(health)
        );
        let file = if name.ends_with("gateway") {
            "two-tier-gateway.yaml"
        } else {
            "two-tier-sampler.yaml"
        };
        let mount = c["volumeMounts"][0]["mountPath"].as_str().unwrap();
        assert_eq!(c["args"][1].as_str().unwrap(), format!("{mount}/{file}"));
    }
    let gw_ports = container_ports(of("Deployment", "observatory-gateway"));
    assert!(gw_ports.contains(&gw_grpc) && gw_ports.contains(&gw_http));
    assert!(container_ports(of("Deployment", "observatory-sampler")).contains(&sm_grpc));
    let front = of("Service", "observatory-gateway");
    assert_eq!(
        front["spec"]["selector"]["app"].as_str(),
        Some("observatory-gateway")
    );
    let headless = of("Service", "observatory-samplers");
    assert_eq!(headless["spec"]["clusterIP"].as_str(), Some("None"));
    assert_eq!(
        headless["spec"]["selector"]["app"].as_str(),
        Some("observatory-sampler")
    );
    assert_eq!(headless["spec"]["ports"][0]["port"].as_u64(), Some(sm_grpc));
    let env = &of("Deployment", "observatory-gateway")["spec"]["template"]["spec"]["containers"][0]
        ["env"][0];
    assert_eq!(env["name"].as_str(), Some("OBSERVATORY_SAMPLERS_DNS"));
    assert_eq!(env["value"].as_str(), Some("observatory-samplers"));
    assert!(lb["resolver"]["dns"]["hostname"]
        .as_str()
        .unwrap()
        .contains("OBSERVATORY_SAMPLERS_DNS"));
}

#[test]
fn two_tier_compose_puts_gateways_behind_haproxy_and_samplers_under_one_name() {
    let c: Value = serde_yaml::from_str(&repo("deploy/fleet/compose-two-tier.yaml")).unwrap();
    for i in 1..=3 {
        let g = &c["services"][format!("gateway-{i}").as_str()];
        let dns = g["environment"]["OBSERVATORY_SAMPLERS_DNS"]
            .as_str()
            .unwrap();
        assert_eq!(
            c["services"]["haproxy"]["environment"][format!("OBS_{i}").as_str()].as_str(),
            Some(format!("gateway-{i}:4317").as_str())
        );
        let s = &c["services"][format!("sampler-{i}").as_str()];
        assert!(s["networks"]["fleet"]["aliases"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|a| a == dns));
        for (svc, file) in [(g, "two-tier-gateway.yaml"), (s, "two-tier-sampler.yaml")] {
            let vol = svc["volumes"][0].as_str().unwrap();
            assert!(vol.starts_with(&format!("./{file}:")), "{vol}");
            assert!(std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../deploy/fleet")
                .join(file)
                .exists());
            assert!(svc["command"][1].as_str().unwrap().ends_with(file));
        }
    }
}

/// `host:port` of a URL or address, without scheme or path.
fn host_port(url: &str) -> (String, u64) {
    let rest = url.split("://").last().unwrap();
    let rest = rest.rsplit('@').next().unwrap();
    let hp = rest.split('/').next().unwrap();
    let (h, p) = hp.rsplit_once(':').unwrap();
    (h.to_string(), p.parse().unwrap())
}

/// The container ports a compose service publishes.
fn published(svc: &Value) -> BTreeSet<u64> {
    svc["ports"]
        .as_sequence()
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    p.as_str()
                        .unwrap()
                        .rsplit(':')
                        .next()
                        .unwrap()
                        .parse()
                        .unwrap()
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_compose_stack_wires_observatory_tempo_loki_timescaledb_prometheus_and_grafana() {
    let compose: Value = serde_yaml::from_str(&repo("deploy/stack/compose.yaml")).unwrap();
    let services = compose["services"].as_mapping().unwrap();
    let names: BTreeSet<&str> = services.keys().map(|k| k.as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "grafana",
            "loki",
            "observatory",
            "prometheus",
            "tempo",
            "timescaledb"
        ]
        .into_iter()
        .collect()
    );
    let svc = |n: &str| &compose["services"][n];
    // Every mounted file is in the repo, and each config the services read
    // is one of them.
    let stack = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/stack");
    let mut mounted = BTreeSet::new();
    for (name, s) in services {
        for v in s["volumes"].as_sequence().into_iter().flatten() {
            let src = v.as_str().unwrap().split(':').next().unwrap();
            if src.starts_with('.') {
                let path = stack.join(src);
                assert!(path.exists(), "{name:?} mounts {src}, which is missing");
                mounted.insert(src.to_string());
            }
        }
    }
    for f in [
        "./observatory.yaml",
        "../tempo/tempo.yaml",
        "./loki.yaml",
        "./prometheus.yml",
    ] {
        assert!(mounted.contains(f), "{f} is not mounted");
    }

    let obs: Value = serde_yaml::from_str(&repo("deploy/stack/observatory.yaml")).unwrap();
    let listens = [
        port_of(get(&obs, "receivers.otlp.protocols.grpc.endpoint")),
        port_of(get(&obs, "receivers.otlp.protocols.http.endpoint")),
        port_of(get(&obs, "extensions.health_check.endpoint")),
        port_of(get(&obs, "extensions.observatory_ui.endpoint")),
        port_of(get(&obs, "service.telemetry.metrics.address")),
    ];
    let obs_ports = published(svc("observatory"));
    for p in listens {
        assert!(
            obs_ports.contains(&p),
            "observatory listens on {p}, not published"
        );
    }
    // Observatory's exporters reach the backends where they listen.
    let tempo: Value = serde_yaml::from_str(&repo("deploy/tempo/tempo.yaml")).unwrap();
    let tempo_otlp = port_of(get(
        &tempo,
        "distributor.receivers.otlp.protocols.grpc.endpoint",
    ));
    let tempo_http = get(&tempo, "server.http_listen_port").as_u64().unwrap();
    let loki: Value = serde_yaml::from_str(&repo("deploy/stack/loki.yaml")).unwrap();
    let loki_http = get(&loki, "server.http_listen_port").as_u64().unwrap();
    let exporters = &obs["exporters"];
    let at = |id: &str| host_port(exporters[id]["endpoint"].as_str().unwrap());
    assert_eq!(at("otlp/tempo"), ("tempo".into(), tempo_otlp));
    assert_eq!(at("loki"), ("loki".into(), loki_http));
    assert_eq!(at("timescaledb"), ("timescaledb".into(), 5432));
    // The database, user and password are the ones the database is made with.
    let db = &svc("timescaledb")["environment"];
    let url = exporters["timescaledb"]["endpoint"].as_str().unwrap();
    assert!(url.starts_with(&format!(
        "postgres://{}:",
        db["POSTGRES_USER"].as_str().unwrap()
    )));
    assert!(url.ends_with(&format!("/{}", db["POSTGRES_DB"].as_str().unwrap())));
    assert!(url.contains("${env:POSTGRES_PASSWORD"));
    assert!(svc("observatory")["environment"]["POSTGRES_PASSWORD"] == db["POSTGRES_PASSWORD"]);

    // Prometheus scrapes Observatory's metrics port.
    let prom: Value = serde_yaml::from_str(&repo("deploy/stack/prometheus.yml")).unwrap();
    let target = prom["scrape_configs"][0]["static_configs"][0]["targets"][0]
        .as_str()
        .unwrap();
    assert_eq!(host_port(target), ("observatory".into(), listens[4]));

    // Grafana: every data source points at a service where it listens, and
    // every dashboard is mounted where the provider reads and names only
    // provisioned data sources.
    let ds: Value = serde_yaml::from_str(&repo(
        "deploy/grafana/provisioning/datasources/observatory.yaml",
    ))
    .unwrap();
    let mut uids = BTreeSet::new();
    for d in ds["datasources"].as_sequence().unwrap() {
        let (host, port) = host_port(d["url"].as_str().unwrap());
        let want = match host.as_str() {
            "prometheus" => *published(svc("prometheus")).iter().next().unwrap(),
            "timescaledb" => 5432,
            "tempo" => tempo_http,
            "loki" => loki_http,
            other => panic!("data source at unknown service {other}"),
        };
        assert_eq!(port, want, "{}", d["name"].as_str().unwrap());
        uids.insert(d["uid"].as_str().unwrap().to_string());
    }
    let provider: Value = serde_yaml::from_str(&repo(
        "deploy/grafana/provisioning/dashboards/observatory.yaml",
    ))
    .unwrap();
    let dir = provider["providers"][0]["options"]["path"]
        .as_str()
        .unwrap();
    let grafana_mounts: Vec<&str> = svc("grafana")["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for dash in ["llm-dashboard.json", "pipeline-health.json"] {
        let mount = format!("../grafana/{dash}:{dir}/{dash}:ro");
        assert!(grafana_mounts.contains(&mount.as_str()), "{mount} missing");
        let d: serde_json::Value =
            serde_json::from_str(&repo(&format!("deploy/grafana/{dash}"))).unwrap();
        let text = d.to_string();
        assert!(!text.contains("${DS_"), "{dash} needs an import input");
        let mut used = BTreeSet::new();
        let mut walk = vec![&d];
        while let Some(v) = walk.pop() {
            if let Some(uid) = v["datasource"]["uid"].as_str() {
                used.insert(uid.to_string());
            }
            match v {
                serde_json::Value::Array(a) => walk.extend(a),
                serde_json::Value::Object(o) => walk.extend(o.values()),
                _ => {}
            }
        }
        assert!(
            !used.is_empty() && used.is_subset(&uids),
            "{dash}: {used:?} vs {uids:?}"
        );
    }
    for sub in ["datasources", "dashboards"] {
        let mount = format!("../grafana/provisioning/{sub}:/etc/grafana/provisioning/{sub}:ro");
        assert!(grafana_mounts.contains(&mount.as_str()), "{mount} missing");
    }
}
