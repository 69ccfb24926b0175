#!/usr/bin/env python3
"""Kafka Streams benchmark: `propensity run` against the Kafka Streams app in
benches/kstreams/ doing the same job, on the same broker, over the same
preloaded topics, in the same run.

What it does:
1. builds the Streams app (`mvn -q package` in benches/kstreams/: one shaded
   jar, which also holds KafkaProbe, the broker-side probe this stdlib-only
   script uses to read committed offsets and output topics);
2. generates traffic (`propensity generate`), trains the outcome models on
   it (`propensity train`; both systems load these same artifacts), creates
   the input topics under a per-run prefix (`propensity topics create`) and
   preloads them once (`propensity produce`: murmur2, keyed by visitor_id);
3. for each round, runs each system in turn (the order alternates between
   rounds) with a fresh consumer group / application.id and a fresh offers
   topic, from the earliest offsets, until it has caught up, then stops it.

What is measured, identically for both:
- events/s: input events divided by the wall time from spawning the process
  until KafkaProbe sees the group's committed offsets on the events topic
  reach the topic's end offsets (polled every 50 ms). Under exactly-once both
  commit input offsets in the transaction of the outputs they made, so this is
  "all input processed and its outputs committed". Start-up (JVM start,
  rebalance, state store creation; Propensity's consent restore) is inside the
  wall time on both sides, so use enough traffic for it not to dominate.
- CPU-seconds per million events: utime + stime of the process (all its
  threads, JIT and GC included for the JVM) from /proc/<pid>/stat, read as
  soon as the probe reports caught-up.
- offers: the offers topic read with isolation.level=read_committed.
The offers' (visitor_id, action_map) sets of the first round are compared;
where the two systems' semantics differ (benches/kstreams/README.md,
"Differences in work") they are expected to differ a little.

Usage: python3 benches/kstreams_vs_propensity.py --brokers 127.0.0.1:9092
       [--bin target/release/propensity] [--visitors 20000] [--rounds 3]
       [--threads N] [--smoke] [--keep DIR]
Needs: a running Kafka 4.x broker (deploy/local/kafka start), Java 17, Maven.
--smoke: tiny traffic, one round; exits 1 unless both systems caught up,
produced offers, and their offers agree (>= 0.95) where the semantics do.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
APP_DIR = HERE / "kstreams"
JAR = APP_DIR / "target" / "propensity-kstreams.jar"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
JAVA_LOGGING = "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn"


def cpu_secs(pid):
    """utime + stime of a live process, all threads (fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def probe(brokers, *args, timeout=None):
    cmd = ["java", JAVA_LOGGING, "-cp", str(JAR), "propensity.kstreams.KafkaProbe", args[0], brokers, *args[1:]]
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=timeout).stdout


class Bench:
    def __init__(self, args, work):
        self.args = args
        self.work = work
        self.prefix = f"kvp-{int(time.time())}"
        self.events_topic = f"{self.prefix}-events"
        self.consent_topic = f"{self.prefix}-consent"
        self.models = work / "models"

    def propensity_env(self, **kafka):
        env = dict(os.environ)
        env.update({
            "PROPENSITY__KAFKA__BROKERS": self.args.brokers,
            "PROPENSITY__KAFKA__EVENTS_TOPIC": self.events_topic,
            "PROPENSITY__KAFKA__CONSENT_TOPIC": self.consent_topic,
            "PROPENSITY__MODELS__DIR": str(self.models),
        })
        env.update({f"PROPENSITY__KAFKA__{k.upper()}": v for k, v in kafka.items()})
        return env

    def cli(self, *args, env=None):
        subprocess.run([self.args.bin, "-q", *args], check=True, env=env or self.propensity_env(),
                       stdout=subprocess.DEVNULL)

    def prepare(self):
        gen = self.work / "traffic"
        self.cli("generate", "--visitors", str(self.args.visitors), "--seed", "42", "--out", str(gen))
        self.cli("train", "--events", str(gen / "events.jsonl"), "--consent", str(gen / "consent.jsonl"),
                 "--out", str(self.models))
        names = {p.stem for p in self.models.glob("*.json")}
        if names != {"purchase", "webinar_signup", "application_complete"}:
            sys.exit(f"training made models for {sorted(names)}: use more --visitors")
        self.round_topics(0)  # creates the input topics too
        self.cli("produce", "--events", str(gen / "events.jsonl"), "--consent", str(gen / "consent.jsonl"))
        self.input_events = sum(1 for _ in open(gen / "events.jsonl"))
        self.settled = settled_visitors(gen)

    def round_topics(self, tag):
        """Creates the input topics (if missing) and a fresh set of outputs named by `tag`."""
        kafka = {
            "offers_topic": f"{self.prefix}-offers-{tag}",
            "dead_letter_topic": f"{self.prefix}-dead-letters-{tag}",
            "changelog_topic": f"{self.prefix}-changelog-{tag}",
            "group_id": f"{self.prefix}-{tag}",
            "transactional_id_prefix": f"{self.prefix}-{tag}",
        }
        self.cli("topics", "create", env=self.propensity_env(**kafka))
        return kafka

    def measure(self, tag, cmd, env, group, offers_topic):
        log = open(self.work / f"{tag}.log", "w")
        started = time.time()
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            done = probe(self.args.brokers, "wait-committed", group, str(self.args.timeout), self.events_topic)
            cpu = cpu_secs(proc.pid)
            wall = int(done.strip()) / 1000 - started
        except subprocess.CalledProcessError:
            sys.exit(f"{tag}: did not catch up within {self.args.timeout} s; see {self.work / (tag + '.log')}")
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
        offers = [json.loads(line.split("\t", 1)[1])
                  for line in probe(self.args.brokers, "read", offers_topic).splitlines() if line]
        return {
            "events_per_sec": self.input_events / wall,
            "wall_secs": wall,
            "cpu_secs": cpu,
            "cpu_secs_per_million": cpu * 1e6 / self.input_events,
            "offers": offers,
        }

    def run_propensity(self, r):
        kafka = self.round_topics(f"p{r}")
        env = self.propensity_env(**kafka)
        env["PROPENSITY__HTTP__LISTEN"] = f"127.0.0.1:{free_port()}"
        cmd = [self.args.bin, "run", "--instance-id", f"bench-{r}"]
        return self.measure(f"propensity-{r}", cmd, env, kafka["group_id"], kafka["offers_topic"])

    def run_kstreams(self, r):
        kafka = self.round_topics(f"k{r}")  # only its offers topic is used
        app_id = f"{self.prefix}-kstreams-{r}"
        state = self.work / f"kstreams-state-{r}"
        env = dict(os.environ, EVENTS_TOPIC=self.events_topic, CONSENT_TOPIC=self.consent_topic,
                   OFFERS_TOPIC=kafka["offers_topic"], STATE_DIR=str(state), THREADS=str(self.args.threads))
        cmd = ["java", JAVA_LOGGING, "-Xms1g", "-Xmx2g", "-jar", str(JAR), self.args.brokers, app_id, str(self.models)]
        result = self.measure(f"kstreams-{r}", cmd, env, app_id, kafka["offers_topic"])
        shutil.rmtree(state, ignore_errors=True)
        return result


def instant(timestamp):
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00").replace("z", "+00:00"))


def settled_visitors(gen):
    """Visitors on whom both systems' consent semantics agree: exactly one
    consent record, granting tracking, dated before their first event. For the
    others Propensity applies the latest consent state it has read (a later
    revocation or erasure already in the preloaded topic drops their earlier
    events too) and buffers events that precede the grant, while the Streams
    join sees the consent as of the event's timestamp and drops events that
    precede any record."""
    records, first_event = {}, {}
    with open(gen / "consent.jsonl") as f:
        for line in f:
            c = json.loads(line)
            records.setdefault(c["visitor_id"], []).append(c)
    with open(gen / "events.jsonl") as f:
        for line in f:
            e = json.loads(line)
            t = instant(e["timestamp"])
            v = e["visitor_id"]
            if v not in first_event or t < first_event[v]:
                first_event[v] = t
    return {
        v for v, cs in records.items()
        if len(cs) == 1 and not cs[0].get("erase") and (cs[0].get("purposes") or {}).get("tracking") is True
        and v in first_event and instant(cs[0]["timestamp"]) <= first_event[v]
    }


def agreement(a, b):
    return len(a & b) / max(1, len(a | b))


def pairs(offers):
    return {(o["visitor_id"], o["action_map"]) for o in offers}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default="target/release/propensity", help="a built propensity binary")
    ap.add_argument("--brokers", default="127.0.0.1:9092")
    ap.add_argument("--visitors", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="Kafka Streams stream threads")
    ap.add_argument("--timeout", type=int, default=600, help="seconds a system may take to catch up")
    ap.add_argument("--smoke", action="store_true", help="tiny traffic, one round, fail on no or disagreeing offers")
    ap.add_argument("--keep", type=Path, help="keep traffic, models and logs here")
    args = ap.parse_args()
    if args.smoke:
        args.visitors, args.rounds = min(args.visitors, 1500), 1
    args.bin = str(Path(args.bin).resolve())

    subprocess.run(["mvn", "-q", "package"], cwd=APP_DIR, check=True)
    work = args.keep or Path(tempfile.mkdtemp(prefix="kstreams-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    bench = Bench(args, work)
    bench.prepare()
    print(f"{bench.input_events} events of {args.visitors} visitors preloaded on topics {bench.prefix}-*; "
          f"Kafka Streams threads {args.threads}")

    results = {"propensity": [], "kstreams": []}
    for r in range(args.rounds):
        order = ["propensity", "kstreams"] if r % 2 == 0 else ["kstreams", "propensity"]
        for system in order:
            run = bench.run_propensity if system == "propensity" else bench.run_kstreams
            res = run(r)
            results[system].append(res)
            print(f"round {r + 1} {system:<10} {res['events_per_sec']:>10,.0f} events/s  wall {res['wall_secs']:6.2f} s"
                  f"  cpu {res['cpu_secs']:6.2f} s  offers {len(res['offers'])}")

    def median(system, key):
        return statistics.median(x[key] for x in results[system])

    p_eps, k_eps = median("propensity", "events_per_sec"), median("kstreams", "events_per_sec")
    p_cpu, k_cpu = median("propensity", "cpu_secs_per_million"), median("kstreams", "cpu_secs_per_million")
    p_offers, k_offers = pairs(results["propensity"][0]["offers"]), pairs(results["kstreams"][0]["offers"])
    both = len(p_offers & k_offers)
    overall = agreement(p_offers, k_offers)
    p_settled = {o for o in p_offers if o[0] in bench.settled}
    k_settled = {o for o in k_offers if o[0] in bench.settled}
    settled = agreement(p_settled, k_settled)
    print(f"\nmedians over {args.rounds} round(s), {bench.input_events} input events:")
    p_count, k_count = len(results["propensity"][0]["offers"]), len(results["kstreams"][0]["offers"])
    print(f"{'system':<12} {'events/s':>12} {'CPU-s / M events':>18} {'offers (round 1)':>17}")
    print(f"{'propensity':<12} {p_eps:>12,.0f} {p_cpu:>18.1f} {p_count:>17}")
    print(f"{'kstreams':<12} {k_eps:>12,.0f} {k_cpu:>18.1f} {k_count:>17}")
    print(f"ratio events/s (propensity / kstreams): {p_eps / k_eps:.2f} (target >= 3)")
    print(f"ratio CPU per event (kstreams / propensity): {k_cpu / p_cpu:.2f} (target >= 4)")
    print(f"offers (visitor, action map): {both} in both, {len(p_offers - k_offers)} only propensity, "
          f"{len(k_offers - p_offers)} only kstreams; agreement (Jaccard) {overall:.3f}")
    print(f"  on the {len(bench.settled)} visitors where consent semantics agree (one grant before their first "
          f"event): {len(p_settled & k_settled)} in both, {len(p_settled - k_settled)} only propensity, "
          f"{len(k_settled - p_settled)} only kstreams; agreement {settled:.3f}")
    print(json.dumps({
        "input_events": bench.input_events, "rounds": args.rounds, "kstreams_threads": args.threads,
        "propensity": {"events_per_sec": p_eps, "cpu_secs_per_million": p_cpu, "offers": p_count},
        "kstreams": {"events_per_sec": k_eps, "cpu_secs_per_million": k_cpu, "offers": k_count},
        "events_per_sec_ratio": p_eps / k_eps, "cpu_per_event_ratio": k_cpu / p_cpu,
        "offer_pairs_in_both": both, "offer_agreement": overall, "offer_agreement_where_semantics_agree": settled,
    }))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    if args.smoke and not (p_offers and k_offers):
        sys.exit("smoke: a system produced no offers")
    if args.smoke and settled < 0.95:
        sys.exit(f"smoke: offers agree on only {settled:.3f} of the visitors where consent semantics agree")


if __name__ == "__main__":
    main()
