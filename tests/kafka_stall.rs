//! A partition that cannot make progress must be visible: when the
//! pipeline cannot commit (here its consent topic is deleted under it, so
//! every batch fails before it is processed) while events wait, `/readyz`
//! turns 503 naming the partitions and `propensity_stalled_partitions`
//! counts them once `kafka.stall_timeout_secs` has passed; once the cause
//! is gone (the topic is back), processing resumes and readiness returns.

use std::time::{Duration, Instant};

use propensity_kafka::produce::{OutgoingRecord, TrafficProducer};
use propensity_system_tests::Deployment;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

fn admin(brokers: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client")
}

fn event(visitor: &str, n: u32) -> String {
    format!(
        r#"{{"event_id":"{visitor}-e{n}","visitor_id":"{visitor}","type":"page_view","timestamp":"2026-11-29T10:{:02}:{:02}Z","page":{{"url":"https://shop.example.com/pricing"}}}}"#,
        n / 60,
        n % 60
    )
}

#[test]
fn a_partition_that_cannot_commit_shows_as_stalled_and_recovers() {
    let mut d = Deployment::new("stall", 3, false);
    d.wait_topics_visible(Duration::from_secs(30));
    d.env
        .push(("PROPENSITY__KAFKA__STALL_TIMEOUT_SECS".into(), "3.0".into()));
    d.env.push((
        "PROPENSITY__KAFKA__STATISTICS_INTERVAL_MS".into(),
        "200".into(),
    ));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let producer = TrafficProducer::new(&d.settings).expect("producer");
    let send_events = |from: u32, to: u32| {
        for n in from..to {
            for v in ["st-1", "st-2", "st-3", "st-4", "st-5", "st-6"] {
                let value = event(v, n);
                producer
                    .send(OutgoingRecord {
                        topic: &d.settings.events_topic,
                        key: Some(v.as_bytes()),
                        value: Some(value.as_bytes()),
                    })
                    .expect("send");
            }
        }
        producer.flush(Duration::from_secs(30)).expect("flush");
    };
    let instance = d.start("a");
    send_events(0, 5);
    d.wait_processed(Duration::from_secs(60));
    instance.wait_ready(Duration::from_secs(30));

    // The consent topic disappears: no batch can be processed any more.
    let admin = admin(&d.settings.brokers);
    for r in rt
        .block_on(admin.delete_topics(&[&d.settings.consent_topic], &AdminOptions::new()))
        .expect("delete")
    {
        r.expect("consent topic deleted");
    }
    send_events(5, 20);
    let started = Instant::now();
    let (status, body) = loop {
        let (status, body) = instance.http_get("/readyz", None);
        let stalled = instance.metrics().sum("propensity_stalled_partitions");
        if status == 503 && body.contains("stall_timeout_secs") && stalled > 0.0 {
            break (status, body);
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no stall reported within 60 s: {status} {body}; stalled gauge {stalled}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    println!(
        "stalled after {:.1} s: {status} {body}",
        started.elapsed().as_secs_f64()
    );

    // The cause goes away: the pipeline resumes, commits everything and is
    // ready again.
    let topic = NewTopic::new(&d.settings.consent_topic, 3, TopicReplication::Fixed(1))
        .set("cleanup.policy", "compact");
    for r in rt
        .block_on(admin.create_topics(&[topic], &AdminOptions::new()))
        .expect("create")
    {
        r.expect("consent topic created again");
    }
    d.wait_processed(Duration::from_secs(120));
    instance.wait_ready(Duration::from_secs(60));
    assert_eq!(instance.metrics().sum("propensity_stalled_partitions"), 0.0);
    assert!(instance.terminate(Duration::from_secs(30)).success());
}
