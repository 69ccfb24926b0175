//! Scale-out mid-stream: one instance, then three in the same group; the
//! partitions and their state move, and the offers still equal the
//! replay's, none twice.

use std::time::Duration;

use propensity_system_tests::{assert_same_offers, offers_in, Deployment};

#[test]
fn one_to_three_instances_mid_stream() {
    let d = Deployment::new("scale", 6, false);
    let traffic = d.generate(250, 23, 0.0);
    let first = d.start("a");
    let mut others = Vec::new();
    d.produce_paced(&traffic, |i, total| {
        if i == total / 2 {
            others.push(d.start("b"));
            others.push(d.start("c"));
        }
    });
    d.wait_processed(Duration::from_secs(180));
    for inst in others {
        assert!(inst.terminate(Duration::from_secs(30)).success());
    }
    assert!(first.terminate(Duration::from_secs(30)).success());
    let kafka = offers_in(&d.read_topic(&d.settings.offers_topic));
    let replay = d.replay_offers(&traffic);
    assert_same_offers(&kafka, &replay);
}
