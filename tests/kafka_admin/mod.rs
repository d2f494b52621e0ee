//! Topic set-up for the tests that run against a tansu broker.

use std::time::{Duration, Instant};

use feedloop_testkit::tansu::Broker;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

/// Creates a topic with one replica per partition. Panics when the broker rejects it.
pub fn create_topic(broker: &Broker, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &broker.address)
        .create()
        .unwrap();
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let runtime = futures_executor(admin.create_topics([&new_topic], &options));
    for result in runtime.unwrap() {
        result.unwrap();
    }
}

/// Runs a future to completion on this thread; the admin API is async but needs no runtime.
fn futures_executor<F: std::future::Future>(future: F) -> F::Output {
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
