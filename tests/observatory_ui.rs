//! The live page and `observatory top` against the real binary under load
//! from the real `loadgen`: the page in headless Chromium (Debian's
//! `chromium`, driven over the DevTools protocol), `top` in a tmux pane.
//! Both must show every configured component and numbers that move. The
//! pipeline-health dashboard's queries are checked against the same
//! collector's live `/metrics`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::*;
use serde_json::{json, Value};

/// The full chain, a metrics pipeline, and an exporter whose backend is
/// down (its errors must show), with the page on.
const CONFIG: &str = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:@GRPC@
processors:
  memory_limiter:
    check_interval: 1s
    limit_mib: 4000
  redaction:
    allow_all_keys: true
    blocked_value_presets: [email]
  llm_cost: {}
  tail_sampling:
    decision_wait: 1s
    policies:
      - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
      - {name: some, type: probabilistic, probabilistic: {sampling_percentage: 20}}
  batch:
    timeout: 200ms
exporters:
  nop:
  otlp/down:
    endpoint: 127.0.0.1:@DOWN@
    tls:
      insecure: true
    timeout: 1s
    retry_on_failure:
      enabled: false
extensions:
  observatory_ui:
    endpoint: 127.0.0.1:@UI@
    trace_link: "http://grafana.test/explore?traceId={trace_id}"
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [memory_limiter, redaction, llm_cost, tail_sampling, batch]
      exporters: [nop, otlp/down]
    metrics:
      receivers: [otlp]
      processors: [memory_limiter, batch]
      exporters: [nop]
    logs:
      receivers: [otlp]
      processors: [memory_limiter, batch]
      exporters: [nop]
"#;

/// Every node the graph must show for [`CONFIG`].
const NODES: [&str; 12] = [
    "receiver:otlp",
    "processor:traces:memory_limiter",
    "processor:traces:redaction",
    "processor:traces:llm_cost",
    "processor:traces:tail_sampling",
    "processor:traces:batch",
    "processor:metrics:memory_limiter",
    "processor:metrics:batch",
    "processor:logs:memory_limiter",
    "processor:logs:batch",
    "exporter:nop",
    "exporter:otlp/down",
];

fn start() -> (Collector, u16) {
    let ui = free_port();
    let c = Collector::start_with(
        CONFIG,
        &[
            ("UI", ui.to_string()),
            ("DOWN", free_port().to_string()),
            ("EXTENSIONS", ", observatory_ui".into()),
        ],
    );
    (c, ui)
}

/// loadgen sending LLM traces at a steady rate for `secs` seconds.
fn load(c: &Collector, secs: u64) -> Child {
    Command::new(loadgen_bin())
        .args(["--endpoint", &format!("127.0.0.1:{}", c.grpc)])
        .args(["--rate", "3000", "--duration", &format!("{secs}s")])
        .args(["--unique-traces", "--concurrency", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting loadgen")
}

/// A headless Chromium with its DevTools endpoint; killed when dropped.
struct Browser {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    fn start() -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-zygote",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--window-size=1400,1500",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect(
                "chromium is not installed: scripts/test.sh installs it (apt-get install chromium)",
            );
        // Chromium says where its DevTools endpoint is on stderr.
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.split("DevTools listening on ").nth(1) {
                    let _ = tx.send(url.to_string());
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("chromium did not open its DevTools endpoint within 30 s");
        let port = url
            .trim_start_matches("ws://")
            .split(['/', ':'])
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        Browser {
            child,
            port,
            _profile: profile,
        }
    }

    /// A DevTools session on the browser's first page.
    fn page(&self) -> Page {
        let targets = devtools_list(self.port);
        let ws = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page target")
            .to_string();
        let (socket, _) = tungstenite::connect(ws).expect("DevTools WebSocket");
        Page { socket, next: 0 }
    }
}

/// DevTools' target list. Chromium keeps the connection open whatever the
/// request says, so the body is read by its Content-Length.
fn devtools_list(port: u16) -> Value {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /json/list HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut len = 0;
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    serde_json::from_slice(&body).unwrap()
}

/// One page's DevTools session.
struct Page {
    socket: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
    next: u64,
}

impl Page {
    /// Sends a command and waits for its answer (events in between are skipped).
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let msg = json!({"id": id, "method": method, "params": params});
        self.socket
            .send(tungstenite::Message::text(msg.to_string()))
            .unwrap();
        loop {
            let m = self.socket.read().expect("DevTools answer");
            let Ok(text) = m.to_text() else { continue };
            let v: Value = serde_json::from_str(text).unwrap();
            if v["id"] == id {
                assert!(v["error"].is_null(), "{method}: {}", v["error"]);
                return v["result"].clone();
            }
        }
    }

    /// Evaluates `expr` in the page; its value (JSON-able).
    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true}),
        );
        assert!(
            r["exceptionDetails"].is_null(),
            "{expr}: {}",
            r["exceptionDetails"]
        );
        r["result"]["value"].clone()
    }
}

/// What the page shows now: each node's id and in-rate, and the tables'
/// texts.
const READ_PAGE: &str = r##"JSON.stringify({
  status: document.getElementById("status").textContent,
  nodes: [...document.querySelectorAll("#graph g.node")].map(g => ({id: g.dataset.id, rate: +g.dataset.in, text: g.textContent})),
  exporters: document.getElementById("exporters").innerText,
  llm: [...document.querySelectorAll("#llm tr")].length - 1,
  top: [...document.querySelectorAll("#top a")].map(a => a.href),
  tail: document.getElementById("tail").innerText,
  redaction: document.getElementById("redaction").innerText,
  memory: document.getElementById("memory").innerText,
})"##;

fn read_page(page: &mut Page) -> Value {
    serde_json::from_str(page.eval(READ_PAGE).as_str().unwrap()).unwrap()
}

fn rate_of(shown: &Value, id: &str) -> f64 {
    shown["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == id)
        .and_then(|n| n["rate"].as_f64())
        .unwrap_or(0.0)
}

#[test]
fn the_live_page_shows_every_component_and_numbers_that_move() {
    let (c, ui) = start();
    let mut loadgen = load(&c, 20);
    let browser = Browser::start();
    let mut page = browser.page();
    page.call("Page.enable", json!({}));
    page.call(
        "Page.navigate",
        json!({"url": format!("http://127.0.0.1:{ui}/")}),
    );
    // The page updates itself: read it until the load shows everywhere.
    let deadline = Instant::now() + Duration::from_secs(15);
    let first = loop {
        std::thread::sleep(Duration::from_millis(500));
        let shown = read_page(&mut page);
        let ids: Vec<&str> = shown["nodes"]
            .as_array()
            .map(|a| a.iter().filter_map(|n| n["id"].as_str()).collect())
            .unwrap_or_default();
        let ready = NODES.iter().all(|n| ids.contains(n))
            && rate_of(&shown, "exporter:nop") > 0.0
            && shown["llm"].as_u64().unwrap_or(0) > 0
            && shown["exporters"].as_str().unwrap().contains("otlp/down");
        if ready {
            break shown;
        }
        assert!(
            Instant::now() < deadline,
            "the page did not show the load within 15 s: {shown:#}\n{}",
            c.logs()
        );
    };
    assert_eq!(first["status"], "live");
    assert_eq!(
        first["nodes"].as_array().unwrap().len(),
        NODES.len(),
        "{first:#}"
    );
    // Numbers move without a reload: read again two seconds later.
    std::thread::sleep(Duration::from_secs(2));
    let second = read_page(&mut page);
    let moved: Vec<&str> = NODES
        .iter()
        .copied()
        .filter(|n| rate_of(&first, n) != rate_of(&second, n))
        .collect();
    assert!(
        moved.contains(&"receiver:otlp"),
        "rates did not move: {first:#} then {second:#}"
    );
    assert!(rate_of(&second, "receiver:otlp") > 1000.0, "{second:#}");
    // The down exporter's failures and last error are shown.
    let exporters = second["exporters"].as_str().unwrap();
    assert!(
        exporters.contains("last error") && exporters.contains("s ago"),
        "{exporters}"
    );
    // The panels have their processors' numbers.
    assert!(second["tail"].as_str().unwrap().contains("traces held"));
    assert!(second["tail"].as_str().unwrap().contains("errors"));
    assert!(second["memory"].as_str().unwrap().contains("limit"));
    assert!(second["redaction"].as_str().unwrap().contains("email"));
    let top = second["top"].as_array().unwrap();
    assert!(!top.is_empty(), "no top traces: {second:#}");
    assert!(top[0]
        .as_str()
        .unwrap()
        .starts_with("http://grafana.test/explore?traceId="));
    // A screenshot for the docs, under the test's output directory.
    let shot = page.call("Page.captureScreenshot", json!({"format": "png"}));
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap())
        .unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("observatory_ui.png");
    std::fs::write(&path, png).unwrap();
    println!("screenshot: {}", path.display());
    let _ = loadgen.kill();
    let _ = loadgen.wait();
}

/// A tmux server of this test's own, so nothing else's sessions mix in.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new() -> Tmux {
        // Tests of one binary run as threads of one process: the pid alone
        // gave two of them the same server, and one's session clashed with
        // the other's ("duplicate session: top").
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Tmux {
            socket: format!("observatory-test-{}-{n}", std::process::id()),
        }
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux is not installed: scripts/test.sh installs it (apt-get install tmux)")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "top"]).stdout).into_owned()
    }

    fn alive(&self) -> bool {
        self.run(&["has-session", "-t", "top"]).status.success()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// The LLM table's calls summed, and the receiver row's in/s, as `top`
/// prints them.
fn top_numbers(screen: &str) -> (f64, String) {
    let number = |s: &str| -> f64 {
        let (n, scale) = match s.strip_suffix('k') {
            Some(n) => (n, 1e3),
            None => match s.strip_suffix('M') {
                Some(n) => (n, 1e6),
                None => (s, 1.0),
            },
        };
        n.parse::<f64>().map_or(0.0, |v| v * scale)
    };
    let mut calls = 0.0;
    let mut in_rate = String::new();
    let mut in_llm = false;
    for line in screen.lines() {
        let cells: Vec<&str> = line
            .trim_matches(|c| c == '│' || c == ' ')
            .split_whitespace()
            .collect();
        if line.contains("LLM calls") {
            in_llm = true;
        } else if in_llm && cells.len() >= 7 && cells[0] != "model" {
            calls += number(cells[2]);
        } else if cells.first() == Some(&"receiver") && cells.get(1) == Some(&"otlp") {
            in_rate = cells[2].to_string();
        }
    }
    (calls, in_rate)
}

#[test]
fn top_shows_every_component_moving_numbers_and_quits_on_q() {
    let (c, ui) = start();
    let mut loadgen = load(&c, 20);
    let tmux = Tmux::new();
    let cmd = format!("{} top --url http://127.0.0.1:{ui}", binary());
    let started = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "160",
        "-y",
        "50",
        &cmd,
    ]);
    assert!(started.status.success(), "{started:?}");
    let names = [
        "otlp",
        "memory_limiter (traces)",
        "redaction (traces)",
        "llm_cost (traces)",
        "tail_sampling (traces)",
        "batch (traces)",
        "batch (metrics)",
        "memory_limiter (metrics)",
        "memory_limiter (logs)",
        "batch (logs)",
        "nop",
        "otlp/down",
    ];
    let deadline = Instant::now() + Duration::from_secs(15);
    let first = loop {
        std::thread::sleep(Duration::from_millis(500));
        let screen = tmux.screen();
        let (calls, in_rate) = top_numbers(&screen);
        // The down exporter's error shows once the first batch is out.
        let ready = names.iter().all(|n| screen.contains(n))
            && calls > 0.0
            && in_rate != "0"
            && screen.contains("last error");
        if ready {
            break (screen, calls);
        }
        assert!(
            Instant::now() < deadline,
            "top did not show the load within 15 s:\n{screen}"
        );
    };
    std::thread::sleep(Duration::from_secs(2));
    let screen = tmux.screen();
    let (calls, in_rate) = top_numbers(&screen);
    assert!(
        calls > first.1,
        "the last minute's calls did not grow ({} then {calls}):\n{screen}",
        first.1
    );
    assert!(
        in_rate.parse::<f64>().is_ok_and(|r| r > 1000.0) || in_rate.ends_with('k'),
        "{screen}"
    );
    println!("{screen}");
    tmux.run(&["send-keys", "-t", "top", "q"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while tmux.alive() {
        assert!(
            Instant::now() < deadline,
            "top did not quit on q:\n{}",
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = loadgen.kill();
    let _ = loadgen.wait();
}

#[test]
fn top_says_what_is_wrong_when_nothing_answers() {
    let port = free_port();
    let out = Command::new(binary())
        .args(["top", "--url", "https://127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only http:// URLs are supported"));
    // A collector that is not there: the header says so, and q still quits.
    let tmux = Tmux::new();
    let cmd = format!("{} top --url http://127.0.0.1:{port}", binary());
    assert!(tmux
        .run(&[
            "new-session",
            "-d",
            "-s",
            "top",
            "-x",
            "120",
            "-y",
            "30",
            &cmd
        ])
        .status
        .success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let screen = tmux.screen();
        if screen.contains(&format!("127.0.0.1:{port}: Connection refused")) {
            break;
        }
        assert!(Instant::now() < deadline, "{screen}");
        std::thread::sleep(Duration::from_millis(200));
    }
    tmux.run(&["send-keys", "-t", "top", "q"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while tmux.alive() {
        assert!(Instant::now() < deadline, "top did not quit on q");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Metric names in a live `/metrics`, each with the label keys its series carry.
fn exported(
    c: &Collector,
) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let (_, body) = http_get(c.metrics, "/metrics").expect("/metrics");
    let mut out: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for line in body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, rest) = line.split_once(['{', ' ']).unwrap();
        let keys = out.entry(name.to_string()).or_default();
        if let Some((labels, _)) = rest.split_once('}') {
            for pair in labels.split("\",") {
                if let Some((k, _)) = pair.split_once('=') {
                    keys.insert(k.to_string());
                }
            }
        }
    }
    out
}

#[test]
fn the_pipeline_health_dashboard_queries_only_metrics_the_collector_exports() {
    let (c, _) = start();
    // llm_cost's series per model appear with the first priced call.
    let mut loadgen = load(&c, 3);
    assert!(loadgen.wait().unwrap().success());
    let live = exported(&c);
    let dash: Value =
        serde_json::from_str(include_str!("../deploy/grafana/pipeline-health.json")).unwrap();
    let panels = dash["panels"].as_array().unwrap();
    assert!(panels.len() >= 10, "{}", panels.len());
    let name = regex::Regex::new(r"\bobservatory_[a-z_]+\b").unwrap();
    let by = regex::Regex::new(r"by \(([a-z_, ]+)\)").unwrap();
    let mut checked = 0;
    for p in panels {
        let title = p["title"].as_str().unwrap();
        assert_eq!(p["datasource"]["uid"], "observatory-prometheus", "{title}");
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            let names: Vec<&str> = name.find_iter(expr).map(|m| m.as_str()).collect();
            assert!(!names.is_empty(), "{title}: {expr} reads no metric");
            for n in &names {
                assert!(live.contains_key(*n), "{title}: {n} is not in /metrics");
            }
            for labels in by.captures_iter(expr) {
                for l in labels[1].split(',').map(str::trim) {
                    assert!(
                        names.iter().any(|n| live[*n].contains(l)),
                        "{title}: no metric of {expr} has the label {l}"
                    );
                }
            }
            checked += 1;
        }
    }
    println!("{checked} PromQL queries checked against a live /metrics");
}
