//! A real Kafka-protocol broker for a test: tansu (installed by
//! `scripts/install-tansu.sh`) on a free port, storing topics, records and
//! consumer offsets in a real PostgreSQL started for the test, so the
//! broker can be stopped and started again without losing them.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;
use super::postgres::Postgres;

/// The tables tansu's PostgreSQL storage expects.
const SCHEMA: &str = include_str!("../../scripts/tansu/schema.sql");

/// A running broker and its database; both stopped when dropped.
pub struct Tansu {
    pg: Postgres,
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// Its Kafka port on 127.0.0.1.
    pub port: u16,
    /// Whether clients must authenticate (SASL/SCRAM-SHA-512).
    authentication: bool,
}

/// The tansu binary: `TANSU_BIN`, else where the install script puts it.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("TANSU_BIN") {
        return p.into();
    }
    let root = std::env::var_os("TANSU_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/observatory/tansu")
        });
    let bin = root.join("bin/tansu");
    assert!(
        bin.exists(),
        "{} is missing: run scripts/install-tansu.sh (scripts/test.sh does)",
        bin.display()
    );
    bin
}

impl Tansu {
    /// Starts PostgreSQL, creates tansu's tables, and starts the broker.
    pub async fn start() -> Tansu {
        let pg = Postgres::start();
        let pool = sqlx::PgPool::connect(&pg.url()).await.unwrap();
        sqlx::raw_sql(SCHEMA).execute(&pool).await.unwrap();
        pool.close().await;
        let mut t = Tansu {
            pg,
            child: None,
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
            authentication: false,
        };
        t.up();
        t
    }

    /// `host:port` for clients.
    pub fn broker(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the broker (again), waiting until it accepts connections.
    pub fn up(&mut self) {
        assert!(self.child.is_none(), "tansu is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("tansu.log"))
            .unwrap();
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new(binary())
            .arg("broker")
            .args(self.authentication.then_some("--authentication"))
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", &self.pg.url()])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not listen within 20s:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the broker (SIGKILL: no goodbye to clients); the data stays.
    pub fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Adds SCRAM-SHA-512 users and restarts the broker requiring clients
    /// to authenticate (tansu's CLI cannot add users to a broker that
    /// already requires it).
    pub fn require_authentication(&mut self, users: &[(&str, &str)]) {
        for (user, password) in users {
            let out = Command::new(binary())
                .args(["user", "create", user, password])
                .args(["--broker", &format!("tcp://{}", self.broker())])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "creating user {user}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        self.down();
        self.authentication = true;
        self.up();
    }

    /// Freezes the broker (SIGSTOP): connections stay open and nothing
    /// answers, as with a hung broker or a network that drops packets.
    pub fn freeze(&self) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        assert!(Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success());
    }

    /// What the broker logged.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tansu.log")).unwrap_or_default()
    }

    /// Creates a topic with `partitions` partitions, through the broker's
    /// own CLI (a client that shares no code with ours).
    pub fn create_topic(&self, name: &str, partitions: u32) {
        let out = Command::new(binary())
            .args([
                "topic",
                "create",
                name,
                "--partitions",
                &partitions.to_string(),
            ])
            .args(["--broker", &format!("tcp://{}", self.broker())])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "creating topic {name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.down();
    }
}
