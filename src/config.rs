//! The `feedloop run` configuration file.
//!
//! YAML, every struct rejects unknown keys, and relative paths are resolved against the
//! current directory. The reference with every key and default is `docs/configuration.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

use feedloop_connectors::delivery::engine::RetryConfig;
use feedloop_connectors::delivery::receivers::ReceiverConfig;
use feedloop_connectors::delivery::route::{load_catalog, Catalog, RouteConfig, Router};
use feedloop_connectors::sink::webhook::WebhookConfig;
use feedloop_connectors::source::kafka::KafkaConfig;
use feedloop_connectors::source::FormatConfig;
use feedloop_rules::HumanDuration;

/// The whole configuration of a run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The sources of events; at least one.
    #[serde(deserialize_with = "serde_norway::with::singleton_map_recursive::deserialize")]
    pub sources: Vec<SourceConfig>,
    /// Rule files or folders; omitted means the shipped packs.
    #[serde(default)]
    pub rules: Vec<PathBuf>,
    /// Event-time settings.
    #[serde(default)]
    pub time: TimeConfig,
    /// Dataflow worker threads.
    #[serde(default = "one")]
    pub workers: usize,
    /// The output for records that fail to decode, and late events.
    #[serde(default)]
    pub dead_letter: Option<DeadLetterConfig>,
    /// The finding outputs.
    #[serde(default)]
    pub outputs: OutputsConfig,
    /// Resource limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Lifecycle changes to Jira, GitHub, Slack, CI, Alertmanager and Kafka.
    #[serde(default)]
    pub delivery: Option<DeliveryConfig>,
    /// KPIs per service and route, and each finding's impact on them.
    #[serde(default)]
    pub kpi: KpiConfig,
}

/// KPI and impact settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KpiConfig {
    /// Compute KPIs and put an `impact` into every finding.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The KPI window size.
    #[serde(default = "default_kpi_window")]
    pub window: HumanDuration,
    /// Windows in a route's trailing baseline (windows with findings on the route left out).
    #[serde(default = "default_kpi_windows")]
    pub baseline_windows: usize,
    /// Windows the correlations and chart series look back over.
    #[serde(default = "default_kpi_windows")]
    pub correlation_windows: usize,
    /// The minimum number of windows a correlation coefficient may rest on.
    #[serde(default = "default_min_correlation")]
    pub min_correlation_windows: usize,
    /// The latency sketch's relative error, from 0.0001 to 0.1.
    #[serde(default = "default_relative_error")]
    pub relative_error: f64,
    /// Routes reported per finding, the most matched first.
    #[serde(default = "default_max_routes")]
    pub max_routes: usize,
    /// Other routes of a finding's services reported when their p99 latency or error rate rose
    /// during it; 0 turns the check off.
    #[serde(default = "default_max_other_routes")]
    pub max_other_routes: usize,
    /// Routes whose KPIs are kept at once; updates for further routes are dropped and counted.
    #[serde(default = "default_max_tracked_routes")]
    pub max_tracked_routes: usize,
}

fn default_max_tracked_routes() -> usize {
    20_000
}

fn default_kpi_window() -> HumanDuration {
    HumanDuration(60_000)
}
fn default_kpi_windows() -> usize {
    30
}
fn default_min_correlation() -> usize {
    8
}
fn default_relative_error() -> f64 {
    0.01
}
fn default_max_routes() -> usize {
    3
}
fn default_max_other_routes() -> usize {
    5
}

impl Default for KpiConfig {
    fn default() -> Self {
        KpiConfig {
            enabled: true,
            window: default_kpi_window(),
            baseline_windows: default_kpi_windows(),
            correlation_windows: default_kpi_windows(),
            min_correlation_windows: default_min_correlation(),
            relative_error: default_relative_error(),
            max_routes: default_max_routes(),
            max_other_routes: default_max_other_routes(),
            max_tracked_routes: default_max_tracked_routes(),
        }
    }
}

/// The largest value that `kpi.baseline_windows` and `kpi.correlation_windows` accept.
pub const MAX_KPI_WINDOWS: usize = 10_000;

/// The largest value that `kpi.max_routes` accepts. Each reported route carries a series of
/// `correlation_windows` points, so the limit bounds the size of a finding.
pub const MAX_IMPACT_ROUTES: usize = 100;

/// Checks a KPI window size against its range, 1s to 1d, and returns the range to use when it
/// is out of it.
pub fn check_kpi_window(window: HumanDuration) -> Result<(), String> {
    if (1_000..=86_400_000).contains(&window.as_millis()) {
        Ok(())
    } else {
        Err("use 1s to 1d, such as 1m".to_string())
    }
}

impl KpiConfig {
    /// Returns the checked options. An error names the first invalid key and its value.
    pub fn options(&self) -> anyhow::Result<feedloop_pipeline::kpi::KpiOptions> {
        if let Err(range) = check_kpi_window(self.window) {
            anyhow::bail!("invalid kpi.window {}: {range}", self.window);
        }
        if self.baseline_windows > MAX_KPI_WINDOWS {
            anyhow::bail!(
                "invalid kpi.baseline_windows {}: use 0 to {MAX_KPI_WINDOWS}, such as 30",
                self.baseline_windows
            );
        }
        if !(1..=MAX_KPI_WINDOWS).contains(&self.correlation_windows) {
            anyhow::bail!(
                "invalid kpi.correlation_windows {}: use 1 to {MAX_KPI_WINDOWS}, such as 30",
                self.correlation_windows
            );
        }
        if self.min_correlation_windows > self.correlation_windows {
            anyhow::bail!(
                "invalid kpi.min_correlation_windows {}: it exceeds correlation_windows {}, so no correlation could be reported",
                self.min_correlation_windows,
                self.correlation_windows
            );
        }
        if self.min_correlation_windows < 3 {
            anyhow::bail!(
                "invalid kpi.min_correlation_windows {}: use at least 3",
                self.min_correlation_windows
            );
        }
        if !(0.0001..=0.1).contains(&self.relative_error) {
            anyhow::bail!(
                "invalid kpi.relative_error {}: use 0.0001 to 0.1, such as 0.01 for 1%",
                self.relative_error
            );
        }
        if !(1..=MAX_IMPACT_ROUTES).contains(&self.max_routes) {
            anyhow::bail!(
                "invalid kpi.max_routes {}: use 1 to {MAX_IMPACT_ROUTES}, such as 3",
                self.max_routes
            );
        }
        if self.max_other_routes > feedloop_pipeline::kpi::OTHER_ROUTES_CHECKED {
            anyhow::bail!(
                "invalid kpi.max_other_routes {}: use at most {}, the routes checked per finding, or 0 to turn the check off",
                self.max_other_routes,
                feedloop_pipeline::kpi::OTHER_ROUTES_CHECKED
            );
        }
        if self.max_tracked_routes == 0 {
            anyhow::bail!("invalid kpi.max_tracked_routes 0: use at least 1, such as 20000");
        }
        Ok(feedloop_pipeline::kpi::KpiOptions {
            enabled: self.enabled,
            window_ms: self.window.as_millis(),
            baseline_windows: self.baseline_windows,
            horizon_windows: self.correlation_windows,
            min_correlation_windows: self.min_correlation_windows,
            relative_error: self.relative_error,
            max_routes: self.max_routes,
            max_other_routes: self.max_other_routes,
            max_tracked_routes: self.max_tracked_routes,
        })
    }
}

/// The destinations of finding changes, and the state that makes each effect happen once.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// The folder of the delivery state store (outbox, remote objects, open findings).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// The JSON Lines file rejected notices are appended to; defaults to
    /// `dead-letters.jsonl` in the state folder.
    #[serde(default)]
    pub dead_letter: Option<PathBuf>,
    /// A YAML file mapping each service to its owners, Jira project, GitHub repository, Slack
    /// channel and CI target.
    #[serde(default)]
    pub catalog: Option<PathBuf>,
    /// Catalog entries written inline; they win over the catalog file's.
    #[serde(default)]
    pub services: Catalog,
    /// Receivers by name.
    #[serde(
        default,
        deserialize_with = "serde_norway::with::singleton_map_recursive::deserialize"
    )]
    pub receivers: BTreeMap<String, ReceiverConfig>,
    /// The routing tree.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Retry settings of every receiver.
    #[serde(default)]
    pub retry: RetryConfig,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from(".feedloop")
}

impl DeliveryConfig {
    /// Returns the catalog: the file's entries, then the inline ones.
    pub fn catalog(&self) -> anyhow::Result<Catalog> {
        let mut catalog = match &self.catalog {
            Some(path) => load_catalog(path).map_err(anyhow::Error::msg)?,
            None => Catalog::new(),
        };
        catalog.extend(self.services.clone());
        Ok(catalog)
    }

    /// Returns the checked routing tree.
    pub fn router(&self) -> anyhow::Result<Router> {
        if self.retry.max_attempts == 0 {
            anyhow::bail!("invalid delivery.retry.max_attempts 0: use at least 1");
        }
        if self.routes.is_empty() && !self.receivers.is_empty() {
            tracing::warn!(
                "delivery has receivers but no routes, so no change reaches them; add `routes`"
            );
        }
        let names: Vec<String> = self.receivers.keys().cloned().collect();
        Router::new(&self.routes, &names)
            .map_err(|err| anyhow::anyhow!("invalid delivery routes: {err}"))
    }

    /// Returns the dead-letter file of rejected notices.
    pub fn dead_letter_path(&self) -> PathBuf {
        self.dead_letter
            .clone()
            .unwrap_or_else(|| self.state_dir.join("dead-letters.jsonl"))
    }
}

/// Resource limits of a run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// The maximum number of windows one rule keeps open per worker; hits beyond are dropped and
    /// counted.
    #[serde(default = "default_max_windows")]
    pub max_windows_per_rule: usize,
    /// How far ahead of the wall clock an event time may be; later events are dead-lettered.
    #[serde(default = "default_max_future")]
    pub max_future: HumanDuration,
}

fn default_max_windows() -> usize {
    250_000
}

fn default_max_future() -> HumanDuration {
    HumanDuration(86_400_000)
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_windows_per_rule: default_max_windows(),
            max_future: default_max_future(),
        }
    }
}

fn one() -> usize {
    1
}

/// One source.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// Log files, plain or gzip, one partition each.
    File {
        paths: Vec<PathBuf>,
        #[serde(default)]
        format: FormatConfig,
    },
    /// Standard input.
    Stdin {
        #[serde(default)]
        format: FormatConfig,
    },
    /// Every partition of a Kafka topic.
    Kafka(KafkaConfig),
}

/// Event-time settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeConfig {
    /// How far an event may trail the newest event of its partition and still count.
    #[serde(default = "default_lateness")]
    pub allowed_lateness: HumanDuration,
    /// How long after its latest window a finding resolves when its condition does not hold
    /// again; omitted means two window sizes of its rule.
    #[serde(default)]
    pub resolve_after: Option<HumanDuration>,
}

fn default_lateness() -> HumanDuration {
    HumanDuration(60_000)
}

impl Default for TimeConfig {
    fn default() -> Self {
        TimeConfig {
            allowed_lateness: default_lateness(),
            resolve_after: None,
        }
    }
}

/// The dead-letter output.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// JSON Lines file of dead letters.
    pub path: PathBuf,
}

/// Finding outputs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputsConfig {
    /// Readable findings and the run summary on stdout.
    #[serde(default)]
    pub console: ConsoleConfig,
    /// Findings as JSON Lines in a file.
    #[serde(default)]
    pub jsonl: Option<JsonlConfig>,
    /// Webhook receivers.
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
}

/// Console output settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Print findings to stdout.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Also print early findings (the condition holds, the window is still open).
    #[serde(default)]
    pub show_early: bool,
}

fn yes() -> bool {
    true
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            enabled: true,
            show_early: false,
        }
    }
}

/// JSON Lines findings file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonlConfig {
    /// The file; its folder is created when missing.
    pub path: PathBuf,
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read configuration {}", path.display()))?;
        let config: Config = serde_norway::from_str(&text)
            .with_context(|| format!("invalid configuration {}", path.display()))?;
        if config.sources.is_empty() {
            anyhow::bail!(
                "invalid configuration {}: `sources` is empty; add one, such as\n  sources:\n    - file: {{paths: [access.log]}}",
                path.display()
            );
        }
        if config.workers == 0 {
            anyhow::bail!(
                "invalid configuration {}: `workers` must be at least 1",
                path.display()
            );
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_full_config() {
        let text = r#"
sources:
  - file: {paths: [a.log, b.log.gz], format: combined}
  - stdin: {}
  - kafka: {brokers: "127.0.0.1:9092", topic: events, stop_at_end: true}
rules: [rules/packs]
time: {allowed_lateness: 2m}
workers: 2
dead_letter: {path: out/dead.jsonl}
outputs:
  console: {show_early: true}
  jsonl: {path: out/findings.jsonl}
  webhooks:
    - url: http://127.0.0.1:9000/hook
      headers: {Authorization: {env: HOOK_TOKEN}}
"#;
        let config: Config = serde_norway::from_str(text).unwrap();
        assert_eq!(config.sources.len(), 3);
        assert_eq!(config.time.allowed_lateness, HumanDuration(120_000));
        assert_eq!(config.workers, 2);
        assert!(config.outputs.console.show_early);
        assert_eq!(config.outputs.webhooks[0].max_attempts, 8);
        match &config.sources[2] {
            SourceConfig::Kafka(kafka) => assert!(kafka.stop_at_end),
            other => panic!("unexpected source {other:?}"),
        }
    }

    #[test]
    fn kpi_settings_parse_and_check() {
        let text = "sources: [{file: {paths: [a.log]}}]\nkpi: {window: 5m, baseline_windows: 12, relative_error: 0.02}\n";
        let config: Config = serde_norway::from_str(text).unwrap();
        let options = config.kpi.options().unwrap();
        assert_eq!(options.window_ms, 300_000);
        assert_eq!(options.baseline_windows, 12);
        assert_eq!(options.horizon_windows, 30);
        assert_eq!(options.relative_error, 0.02);
        let mut bad = config.kpi.clone();
        bad.min_correlation_windows = 100;
        assert!(bad.options().unwrap_err().to_string().starts_with(
            "invalid kpi.min_correlation_windows 100: it exceeds correlation_windows 30"
        ));
        let err = serde_norway::from_str::<Config>(
            "sources: [{file: {paths: [a.log]}}]\nkpi: {windw: 1m}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown field `windw`"), "{err}");
    }

    fn kafka_source(text: &str) -> KafkaConfig {
        let config: Config = serde_norway::from_str(text).unwrap();
        match config.sources.into_iter().next() {
            Some(SourceConfig::Kafka(kafka)) => kafka,
            other => panic!("unexpected source {other:?}"),
        }
    }

    #[test]
    fn kafka_avro_settings_parse() {
        let one = kafka_source(
            "sources:\n  - kafka: {brokers: \"127.0.0.1:9092\", topic: t, format: avro, avro: {schema_ids: 3}}\n",
        );
        assert_eq!(one.format, FormatConfig::Avro);
        let avro = one.avro.clone().unwrap();
        assert_eq!(avro.schema_ids, Some(vec![3]));
        assert_eq!(avro.schema, None);
        assert!(one.payload_decoder().is_ok());

        let many = kafka_source(
            "sources:\n  - kafka: {brokers: \"127.0.0.1:9092\", topic: t, format: avro, avro: {schema: s.avsc, schema_ids: [1, 7]}}\n",
        );
        let avro = many.avro.unwrap();
        assert_eq!(avro.schema_ids, Some(vec![1, 7]));
        assert_eq!(avro.schema, Some(PathBuf::from("s.avsc")));

        let err = serde_norway::from_str::<Config>(
            "sources:\n  - kafka: {brokers: b, topic: t, format: avro, avro: {schema_ids: one}}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("a schema id or a list of schema ids, such as 1 or [1, 7]"),
            "{err}"
        );
    }

    #[test]
    fn file_avro_format_parses() {
        let config: Config =
            serde_norway::from_str("sources: [{file: {paths: [a.avro], format: avro}}]\n").unwrap();
        match &config.sources[0] {
            SourceConfig::File { format, .. } => assert_eq!(*format, FormatConfig::Avro),
            other => panic!("unexpected source {other:?}"),
        }
    }

    #[test]
    fn kafka_avro_empty_ids_rejected() {
        let kafka = kafka_source(
            "sources:\n  - kafka: {brokers: b, topic: t, format: avro, avro: {schema_ids: []}}\n",
        );
        assert_eq!(
            kafka.payload_decoder().unwrap_err(),
            "Kafka source `t` has an empty avro.schema_ids, so it would reject every message; \
             list the ids to accept, or remove the key to accept any id"
        );
    }

    #[test]
    fn kpi_errors_name_one_key() {
        let cases = [
            ("window: 0s", "invalid kpi.window 0s: use 1s to 1d, such as 1m"),
            ("window: 10ms", "invalid kpi.window 10ms: use 1s to 1d, such as 1m"),
            ("window: 2d", "invalid kpi.window 2d: use 1s to 1d, such as 1m"),
            (
                "baseline_windows: 10001",
                "invalid kpi.baseline_windows 10001: use 0 to 10000, such as 30",
            ),
            (
                "correlation_windows: 0",
                "invalid kpi.correlation_windows 0: use 1 to 10000, such as 30",
            ),
            (
                "correlation_windows: 10001",
                "invalid kpi.correlation_windows 10001: use 1 to 10000, such as 30",
            ),
            (
                "min_correlation_windows: 2",
                "invalid kpi.min_correlation_windows 2: use at least 3",
            ),
            (
                "relative_error: 0.5",
                "invalid kpi.relative_error 0.5: use 0.0001 to 0.1, such as 0.01 for 1%",
            ),
            ("max_routes: 0", "invalid kpi.max_routes 0: use 1 to 100, such as 3"),
            ("max_routes: 101", "invalid kpi.max_routes 101: use 1 to 100, such as 3"),
            (
                "max_other_routes: 21",
                "invalid kpi.max_other_routes 21: use at most 20, the routes checked per finding, or 0 to turn the check off",
            ),
            (
                "max_tracked_routes: 0",
                "invalid kpi.max_tracked_routes 0: use at least 1, such as 20000",
            ),
        ];
        for (setting, expected) in cases {
            let text = format!("sources: [{{file: {{paths: [a.log]}}}}]\nkpi: {{{setting}}}\n");
            let config: Config = serde_norway::from_str(&text).unwrap();
            assert_eq!(
                config.kpi.options().unwrap_err().to_string(),
                expected,
                "{setting}"
            );
        }
    }

    #[test]
    fn kpi_bounds_are_accepted() {
        let cases = [
            "window: 1s",
            "window: 1d",
            "baseline_windows: 0",
            "baseline_windows: 10000",
            "correlation_windows: 10000",
            "max_routes: 100",
            "max_other_routes: 0",
            "max_other_routes: 20",
        ];
        for setting in cases {
            let text = format!("sources: [{{file: {{paths: [a.log]}}}}]\nkpi: {{{setting}}}\n");
            let config: Config = serde_norway::from_str(&text).unwrap();
            assert!(config.kpi.options().is_ok(), "{setting}");
        }
    }

    #[test]
    fn parse_rejects_unknown_key() {
        let text = "sources: [{file: {paths: [a.log]}}]\noutput: {}\n";
        let err = serde_norway::from_str::<Config>(text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `output`"), "{err}");
    }
}
