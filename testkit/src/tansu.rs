//! A tansu broker on 127.0.0.1 for Kafka tests: found through `FEEDLOOP_TANSU`, the cache
//! folder `scripts/test.sh` installs it to, or `PATH`, and killed when dropped.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running broker with in-memory storage.
pub struct Broker {
    child: Child,
    /// The `127.0.0.1:PORT` address clients bootstrap from.
    pub address: String,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Returns the tansu binary.
///
/// # Panics
///
/// Panics with the fix when tansu is nowhere to be found.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("FEEDLOOP_TANSU") {
        return PathBuf::from(path);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let cached = home.join(".cache/feedloop/tansu-0.6.0/bin/tansu");
    if cached.exists() {
        return cached;
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("tansu"))
        .find(|p| p.exists());
    on_path.unwrap_or_else(|| {
        panic!("the tansu broker was not found; run scripts/test.sh, which installs it, or set FEEDLOOP_TANSU")
    })
}

/// Starts a broker on a free loopback port and waits until it listens.
///
/// # Panics
///
/// Panics when the broker does not start or does not listen within 30 seconds.
pub fn start() -> Broker {
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind a loopback port")
        .local_addr()
        .expect("a bound address")
        .port();
    let address = format!("127.0.0.1:{port}");
    let url = format!("tcp://{address}");
    let child = Command::new(binary())
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the tansu broker starts");
    let broker = Broker { child, address };
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(&broker.address).is_err() {
        assert!(
            Instant::now() < deadline,
            "tansu did not listen on {} within 30s",
            broker.address
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    broker
}
