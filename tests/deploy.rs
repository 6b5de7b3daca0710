//! The fleet's deployment files agree with its Observatory config: the
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
