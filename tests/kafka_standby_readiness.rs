//! Promises of a deployment with several instances:
//!
//! - `topics create` succeeds when the topics exist, also run by several
//!   processes at once: the Kubernetes pods run it as an init container on
//!   every start;
//! - an instance that joined the group but owns no partition (more
//!   instances than partitions) is a ready standby: `/readyz` 200 with
//!   `assigned_partitions` 0 and `propensity_ready` 1 agree (the broker is
//!   confirmed by the start-up probe, not only by a batch, a commit or a
//!   restore, which such an instance never has), and `docs/operations.md`
//!   says so everywhere. (Before the start-up probe, `/readyz` answered 503
//!   "the Kafka broker is not reachable" while the gauge said 1, and the
//!   docs contradicted each other.)

use std::time::{Duration, Instant};

use propensity_system_tests::{workspace_root, Deployment};

/// The sentence of the endpoints table in `docs/operations.md` about such
/// an instance, and claims the page must not make anywhere.
const DOCUMENTED: &str = "An instance that has joined the group but was given no partitions";
const CONTRADICTIONS: &[&str] = &[
    "stays not ready",
    "it raises\n  [NotReady]",
    "is not ready (`503`)",
    "answers 503 listing",
];

#[test]
fn an_instance_without_partitions_is_a_ready_standby_as_documented() {
    // One partition, two instances: the second gets nothing.
    let d = Deployment::new("standby", 1, false);
    let a = d.start("a");
    a.wait_ready(Duration::from_secs(60));
    let b = d.start("b");
    // b has joined once it has seen a rebalance; a keeps its partition
    // (cooperative-sticky). From then on b must stay a ready standby.
    let started = Instant::now();
    while b.metrics().sum("propensity_rebalances_total") < 1.0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the second instance did not join within 60 s; log: {}",
            b.log.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let joined = Instant::now();
    while joined.elapsed() < Duration::from_secs(5) {
        let (status, body) = b.http_get("/readyz", None);
        let readyz: serde_json::Value = serde_json::from_str(&body).expect("readyz JSON");
        assert_eq!(readyz["assigned_partitions"], 0, "{readyz}");
        assert_eq!(status, 200, "an instance without partitions: {readyz}");
        assert_eq!(readyz["broker_reachable"], true, "{readyz}");
        // The gauge and /readyz agree.
        assert_eq!(b.metrics().sum("propensity_ready"), 1.0, "{readyz}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let (a_status, _) = a.http_get("/readyz", None);
    assert_eq!(a_status, 200, "the owner stays ready");

    // The docs say so, and nowhere the opposite.
    let ops = std::fs::read_to_string(workspace_root().join("docs/operations.md"))
        .expect("docs/operations.md");
    let line = ops
        .lines()
        .find(|l| l.contains(DOCUMENTED))
        .expect("docs/operations.md no longer describes an instance without partitions");
    assert!(
        line.contains("is ready (`200`") && line.contains("`propensity_ready` 1"),
        "docs/operations.md: {line}"
    );
    for c in CONTRADICTIONS {
        assert!(
            !ops.contains(c),
            "docs/operations.md says {c:?} of an instance without partitions, but it is a ready standby"
        );
    }
}

/// Every pod of the StatefulSet runs `propensity topics create` as its init
/// container, in parallel with the others and again on every restart
/// (deploy/kubernetes/statefulset.yaml): it must succeed when the topics
/// exist, also when several processes run it at the same moment.
#[test]
fn topics_create_is_idempotent_for_init_containers() {
    // The deployment has created its topics once already.
    let d = Deployment::new("topics-again", 2, false);
    let children: Vec<_> = (0..3)
        .map(|_| {
            d.command(&["topics", "create"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("propensity topics create")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().expect("topics create");
        assert!(
            out.status.success(),
            "a repeated `topics create` failed, so a restarted pod's init container would too:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    d.wait_topics_visible(Duration::from_secs(30));
}
