//! The broker goes away for 20 s mid-stream and comes back: the pipeline
//! waits, retries and resumes without crashing, and the offers still equal
//! the replay's, none lost or duplicated.

use std::process::Command;
use std::time::Duration;

use propensity_system_tests::{assert_same_offers, offers_in, Deployment};

fn broker(action: &str) {
    let script = std::env::var("PROPENSITY_TEST_BROKER_SCRIPT").unwrap_or_else(|_| {
        panic!("PROPENSITY_TEST_BROKER_SCRIPT must name the script that controls the test broker (tests/run-all.sh sets it to deploy/local/kafka)")
    });
    let status = Command::new(&script)
        .arg(action)
        .status()
        .expect("broker script");
    assert!(status.success(), "{script} {action} failed");
}

#[test]
fn survives_a_20_second_broker_outage() {
    let d = Deployment::new("outage", 3, false);
    let traffic = d.generate(200, 24, 0.0);
    let instance = d.start("a");
    d.produce_paced(&traffic, |i, total| {
        if i == total / 3 {
            broker("stop");
            std::thread::sleep(Duration::from_secs(20));
            broker("start");
        }
    });
    d.wait_processed(Duration::from_secs(240));
    let log = instance.log_text();
    let status = instance.terminate(Duration::from_secs(30));
    assert!(status.success(), "exit {status}; log:\n{log}");
    let kafka = offers_in(&d.read_topic(&d.settings.offers_topic));
    let replay = d.replay_offers(&traffic);
    assert_same_offers(&kafka, &replay);
}
