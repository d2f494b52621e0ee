//! The processes a latency run starts: a tansu broker and `feedloop run`, both on 127.0.0.1.
//!
//! Each child is held by a [`Process`], which kills it when dropped, so an error or a panic
//! anywhere in the run still stops the broker and feedloop. Their output goes to log files in
//! the run's folder, where the error messages point.

use std::fs::File;
use std::future::Future;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

/// The tansu version that `scripts/test.sh` installs.
const TANSU_VERSION: &str = "0.6.0";

/// How long the broker may take to accept connections.
const BROKER_START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long creating the topic may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// A child process that is killed when dropped.
pub struct Process {
    name: &'static str,
    log: PathBuf,
    child: Child,
}

impl Process {
    /// Starts `command` with stdin closed and stdout and stderr appended to `log`.
    pub fn spawn(name: &'static str, command: &mut Command, log: &Path) -> anyhow::Result<Process> {
        let output = File::create(log)
            .with_context(|| format!("failed to create log file {}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output)
            .spawn()
            .with_context(|| format!("failed to start {name} ({:?})", command.get_program()))?;
        Ok(Process {
            name,
            log: log.to_path_buf(),
            child,
        })
    }

    /// Returns an error when the process has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => bail!(
                "{} exited early with {status}; its output is in {}",
                self.name,
                self.log.display()
            ),
        }
    }

    /// Sends SIGINT, as Ctrl-C does, and waits up to `timeout` for the process to exit. A
    /// process still running then is killed. Returns the exit status.
    pub fn interrupt(mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-s", "INT", &pid])
            .status()
            .context("failed to run `kill` to stop a child process")?;
        if !sent.success() {
            eprintln!("warning: `kill -s INT {pid}` failed; killing {}", self.name);
        }
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "warning: {} did not exit within {} s of SIGINT; killing it",
            self.name,
            timeout.as_secs()
        );
        self.child.kill()?;
        Ok(self.child.wait()?)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Returns the tansu binary: `FEEDLOOP_TANSU`, else the cache folder `scripts/test.sh`
/// installs it to.
pub fn tansu_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("FEEDLOOP_TANSU") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!(
                "FEEDLOOP_TANSU is {}, which is not a file; point it at the tansu binary, or \
                 unset it and run scripts/test.sh, which installs tansu",
                path.display()
            );
        }
        return Ok(path);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .ok_or_else(|| anyhow!("HOME is not set; set FEEDLOOP_TANSU to the tansu binary"))?;
    let cached = home.join(format!(".cache/feedloop/tansu-{TANSU_VERSION}/bin/tansu"));
    if !cached.is_file() {
        bail!(
            "the tansu broker was not found at {}; run scripts/test.sh, which installs it \
             there, or set FEEDLOOP_TANSU to its path",
            cached.display()
        );
    }
    Ok(cached)
}

/// Returns what `tansu --version` prints, such as `tansu 0.6.0`.
pub fn tansu_version(tansu: &Path) -> Option<String> {
    let output = Command::new(tansu).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
    (output.status.success() && !text.is_empty()).then_some(text)
}

/// A tansu broker with in-memory storage.
pub struct Broker {
    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub address: String,
    /// The broker process.
    pub process: Process,
}

/// Starts tansu on a free port of 127.0.0.1 and waits until it accepts connections.
pub fn start_broker(tansu: &Path, log: &Path) -> anyhow::Result<Broker> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .context("failed to find a free port on 127.0.0.1")?
        .port();
    let address = format!("127.0.0.1:{port}");
    let url = format!("tcp://{address}");
    let mut command = Command::new(tansu);
    command
        .args(["broker", "--listener-url", &url])
        .args(["--advertised-listener-url", &url])
        .args(["--storage-engine", "memory://tansu/"])
        // tansu also reads these from the environment. Unset, they keep it from exporting
        // telemetry or loading schemas from anywhere else.
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("SCHEMA_REGISTRY");
    let mut process = Process::spawn("the tansu broker", &mut command, log)?;

    let deadline = Instant::now() + BROKER_START_TIMEOUT;
    while TcpStream::connect(&address).is_err() {
        process.check_running()?;
        if Instant::now() > deadline {
            bail!(
                "tansu did not accept connections on {address} within {} s; its output is in {}",
                BROKER_START_TIMEOUT.as_secs(),
                log.display()
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
    Ok(Broker { address, process })
}

/// Creates a topic with one replica per partition.
pub fn create_topic(brokers: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("failed to create the Kafka admin client")?;
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = block_on(admin.create_topics([&new_topic], &options), ADMIN_TIMEOUT)?
        .with_context(|| format!("failed to create topic {topic} on {brokers}"))?;
    for result in results {
        result.map_err(|(name, code)| anyhow!("failed to create topic {name}: {code}"))?;
    }
    Ok(())
}

/// Wakes the thread that waits in [`block_on`].
struct Unpark(thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls a future on this thread until it completes or `timeout` passes. The admin client's
/// futures are completed by its own thread, so they need no async runtime.
fn block_on<F: Future>(future: F, timeout: Duration) -> anyhow::Result<F::Output> {
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut context = TaskContext::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    let deadline = Instant::now() + timeout;
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return Ok(output);
        }
        let now = Instant::now();
        if now >= deadline {
            bail!(
                "the Kafka admin request timed out after {} s",
                timeout.as_secs()
            );
        }
        // Wake-ups can be missed between the poll and the park, so the wait is bounded.
        thread::park_timeout((deadline - now).min(Duration::from_millis(50)));
    }
}

/// Starts `feedloop run --config CONFIG` with `env` added to its environment.
pub fn start_feedloop(
    binary: &Path,
    config: &Path,
    env: &[(&str, &str)],
    log: &Path,
) -> anyhow::Result<Process> {
    let mut command = Command::new(binary);
    command.arg("run").arg("--config").arg(config);
    command.envs(env.iter().copied());
    Process::spawn("feedloop", &mut command, log)
}
