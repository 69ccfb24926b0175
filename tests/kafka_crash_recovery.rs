//! Crash recovery: the pipeline is killed with SIGKILL at least five times
//! at random points while traffic flows and restarted each time; the
//! offers topic read with read_committed still equals the replay's offers:
//! none missing, none duplicated.

use std::time::{Duration, Instant};

use propensity_system_tests::{assert_same_offers, offers_in, Deployment};

#[test]
fn offers_survive_repeated_kill_9() {
    let d = Deployment::new("crash", 3, false);
    let traffic = d.generate(250, 22, 0.0);
    let mut instance = Some(d.start("a"));
    let mut kills = 0;
    // A deterministic but irregular schedule of kill points (by record
    // index) plus a minimum time between kills, so each run gets to commit.
    let mut last_kill = Instant::now();
    let mut seed = 0x9e37_79b9_u64;
    d.produce_paced(&traffic, |i, total| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let due = kills < 8
            && i > total / 20
            && seed % 97 == 0
            && last_kill.elapsed() > Duration::from_millis(1500);
        if due {
            if let Some(inst) = instance.take() {
                inst.kill9();
            }
            kills += 1;
            instance = Some(d.start("a"));
            last_kill = Instant::now();
        }
    });
    while kills < 5 {
        if let Some(inst) = instance.take() {
            inst.kill9();
        }
        kills += 1;
        instance = Some(d.start("a"));
        std::thread::sleep(Duration::from_millis(1500));
    }
    d.wait_processed(Duration::from_secs(180));
    let inst = instance.take().expect("instance");
    let status = inst.terminate(Duration::from_secs(30));
    assert!(status.success(), "exit after SIGTERM: {status}");
    assert!(kills >= 5, "only {kills} kills");

    let kafka = offers_in(&d.read_topic(&d.settings.offers_topic));
    let replay = d.replay_offers(&traffic);
    assert_same_offers(&kafka, &replay);
}
