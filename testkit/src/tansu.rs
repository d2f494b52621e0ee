//! A tansu broker on 127.0.0.1 for Kafka tests: found through `FEEDLOOP_TANSU`, the cache
//! folder `scripts/test.sh` installs it to, or `PATH`, and killed when dropped.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

/// A running broker with in-memory storage.
pub struct Broker {
    child: Child,
    /// The `127.0.0.1:PORT` address clients bootstrap from.
    pub address: String,
}

impl Broker {
    /// Creates a topic with one replica per partition.
    ///
    /// # Panics
    ///
    /// Panics when the broker rejects the topic or does not answer within 30 s.
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.address)
            .create()
            .expect("an admin client for the broker");
        let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = block_on(admin.create_topics([&new_topic], &options))
            .expect("the broker answers the create request");
        for result in results {
            result.expect("the broker creates the topic");
        }
    }
}

/// Runs a future to completion on this thread, because the admin API is async but needs no
/// runtime.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        assert!(Instant::now() < deadline, "admin request timed out");
        std::thread::park_timeout(Duration::from_millis(50));
    }
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
