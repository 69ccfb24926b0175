#!/usr/bin/env python3
"""Holdout benchmark: Propensity's models against scikit-learn's LogisticRegression on
evaluation traffic of another seed AND another shape than the training traffic, in one run.

What it does:
1. `propensity generate` twice: training traffic (seed A, --train-visitors, arrivals over
   --train-span-secs, no malformed lines) and evaluation traffic (seed B, --eval-visitors,
   arrivals over --eval-span-secs, --eval-invalid-rate malformed lines). `generate` offers
   only --visitors, --seed, --span-secs and --invalid-rate: conversion rates, session lengths,
   the consent mix and behaviour are fixed inside the simulator and cannot differ. So "other
   shape" here is: another visitor count, arrivals spread over 6 h instead of 1 h (more
   hours of the day, lower concurrency, so the time-of-day features move), and 2 % malformed
   lines that both sides must reject.
2. The consent gate, simplified (see "Consent" below): both files of both traffics are
   filtered to the visitors whose first consent record grants `tracking` at or before their
   first event. Both sides get the same filtered files; malformed event lines are kept in the
   evaluation file (Propensity dead-letters them, the Python side skips them).
3. `propensity train` on the filtered training files (timed, wall clock of the process:
   reading, example collection by the engine, l2 grid, refit, writing artifacts), then
   `propensity evaluate --report` on the filtered evaluation files; its per-outcome session
   AUC and session calibration table are read from `evaluation.json`.
4. scikit-learn: per-session aggregate features built in Python from the same raw JSON lines,
   `StandardScaler` + `LogisticRegression(solver="lbfgs", max_iter=1000)` per outcome, C
   picked from a small grid by AUC on a validation split (a fifth of the training sessions,
   by a hash of the session), refit on all training sessions, scored on the evaluation
   sessions (timed: feature building plus fits).
5. One table per outcome: sessions, positives, session AUC and session ECE of both sides, and
   both training wall times. A cross-check (`propensity replay --scores-out` on the
   evaluation files) re-derives Propensity's session scores for the Python session set, so
   the two AUC columns are shown to be over the very same sessions.

Session definitions (mirroring `evaluate`, crates/propensity-training/src/evaluation.rs and
dataset.rs; engine rules in crates/propensity-engine/src/engine/session.rs and decide.rs):
- A session is the engine's: a new one starts when the visitor has none, when an event
  carries a `session_id` other than the current explicit one, or, for an event without
  `session_id`, when the current session was explicit or the gap since its last event is
  over `sessions.inactivity_timeout_secs` (1200 s). A revocation or erasure ends it.
  Events older than the visitor's newest by more than `allowed_lateness_secs` and repeated
  event ids within a session are dropped, as the engine does (the simulator makes neither).
- Per outcome, the engine reports one example row per processed event while the outcome
  is not yet achieved in the session; the event that achieves it (the [[outcomes]]
  `achieved_when` predicates of the config) and everything after are not scored.
  Session score = the last of those rows' score, i.e. the prediction after the last event
  before the outcome (or the session's last event). Label = the session achieved the
  outcome. Sessions counted = sessions with at least one row for that outcome, i.e. whose
  first event does not already achieve it. `roc_auc` is Mann-Whitney with tied scores
  counting one half, the same number as sklearn's `roc_auc_score`.
- The Python side builds one row per (session, outcome) from exactly those events: every
  event strictly before the achieving one, else all events. So both sides predict from the
  same information; no event at or after the outcome is used (no leakage).
- ECE (crates/propensity-training/src/report/summaries.rs, metrics.rs): ten equal-width
  bins over [0, 1] (bin = floor(10 p), 1.0 in the last bin, empty bins dropped), the
  count-weighted mean of |observed rate - mean predicted|. Both ECE columns are per
  SESSION (Propensity's from `per_session.calibration` of evaluation.json; `evaluate`'s
  printed ECE column is per event, shown as "ECE/event" for reference).

Consent: the engine's gate (latest consent state, no retroactive consent, a pre-consent
buffer with an event-time TTL swept by a per-Kafka-partition watermark) is exact only
inside the engine; late grants depend on murmur2 partitions and watermarks. So both
sides are restricted to visitors whose first consent record grants tracking at or before
their first event (the simulator's grant_before, revoke_mid_session and
erase_after_session scenarios, about 80 % of visitors). For them the gate is simple and
replicated exactly: an event is processed iff the latest consent record at or before its
time (consent first at equal times, as `replay` merges) grants tracking; a revocation or
erasure ends the session. Visitors that deny, never answer or grant late are removed from
both sides' files, so Propensity trains on the same visitors too (not on the full files).

Differences that remain, by design:
- Features: Propensity's engine features (`FeatureSpec`, per event, learned vocabularies) vs this
  script's own per-session aggregates (counts by event type, page category, form and
  action, chat action, custom name; dwell by category; current page; device, browser, OS,
  traffic source; duration; local hour and weekday of the last event).
- Training rows: Propensity fits one row per scored event (every prefix of a session,
  negatives undersampled to 4 per positive, prior-corrected intercept, its own l2 grid on
  its own validation split); scikit-learn fits one row per session at the scored moment
  (the row the session metric looks at), without undersampling. The scikit-learn model is
  thus trained for exactly the quantity measured; Propensity's for every moment. That
  matters: a positive's snapshot is taken just before the outcome (typically right after
  "form started"), a negative's at its session's last event (typically after "form
  abandoned" or leaving), and a model fitted on those snapshots learns that contrast (its
  largest weights are last-event type and form started/abandoned), which a per-event scorer
  cannot use because it does not know which event is a session's last. No event at or after
  the outcome enters any row, so this is not leakage of the outcome, but it favours the
  scikit-learn column. `--also-prefix-rows` adds a control: scikit-learn fitted on one row
  per scored event (every prefix of every training session, each with its session's label),
  the way Propensity trains, scored on the same session snapshots (slower: about +45 s at
  the defaults).
- Times: Propensity's is the whole `train` process (file reading and engine replay
  included); scikit-learn's is Python feature building from JSON plus all fits.

Usage: python3 benches/holdout_vs_sklearn.py --bin target/release/propensity
       [--config FILE] [--train-visitors 20000] [--eval-visitors 8000]
       [--train-seed 11] [--eval-seed 29] [--train-span-secs 3600]
       [--eval-span-secs 21600] [--eval-invalid-rate 0.02] [--workdir DIR]
       [--also-prefix-rows]
About 40 s at the defaults on a 2-core machine (about 70 s with --also-prefix-rows).
Needs: pip install scikit-learn numpy (Python 3.11+ for tomllib)
"""

import argparse
import hashlib
import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import warnings
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)
VALIDATION_FRACTION = 0.2
EVENT_TYPES = ("page_view", "search", "form_fill", "chat", "custom")
TYPE_OBJECT = {"page_view": "page", "search": "search", "form_fill": "form",
               "chat": "chat", "custom": "custom"}
FORM_ACTIONS = ("started", "submitted", "abandoned")
CHAT_ACTIONS = ("requested", "started", "message", "ended")
RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


# ------------------------------------------------------------------ commands

def run(cmd, what):
    """Runs a command; on failure exits non-zero with its stderr (and stdout)."""
    start = time.perf_counter()
    try:
        done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    except OSError as e:
        sys.exit(f"{what} failed: cannot run {cmd[0]}: {e}")
    secs = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{what} failed (exit {done.returncode}): {' '.join(map(str, cmd))}\n"
                 f"--- stderr ---\n{done.stderr}--- stdout ---\n{done.stdout}")
    return done, secs


def load_config(binary, config):
    """The effective configuration as `propensity check-config` prints it."""
    cmd = [binary, "check-config"] + ([config] if config else [])
    done, _ = run(cmd, "check-config")
    return tomllib.loads(done.stdout)


# -------------------------------------------------------------- raw records

def parse_time(text):
    """(epoch ms, local hour, local weekday Mon=0) of an RFC 3339 timestamp, or None."""
    if not isinstance(text, str) or not RFC3339.match(text):
        return None
    try:
        dt = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        return None
    return int(round(dt.timestamp() * 1000)), dt.hour, dt.weekday()


def valid_id(v):
    return isinstance(v, str) and 0 < len(v) <= 128


def decode_event(line):
    """The event if it passes the wire contract's checks the engine makes, else None
    (the engine dead-letters it). Checks: a JSON object; event_id, visitor_id (and
    session_id if given) non-empty strings of at most 128 characters; a known type; an
    RFC 3339 timestamp; the object the type requires, with its required fields."""
    try:
        e = json.loads(line)
    except ValueError:
        return None
    if not isinstance(e, dict):
        return None
    if not (valid_id(e.get("event_id")) and valid_id(e.get("visitor_id"))):
        return None
    if "session_id" in e and e["session_id"] is not None and not valid_id(e["session_id"]):
        return None
    if e.get("type") not in EVENT_TYPES:
        return None
    t = parse_time(e.get("timestamp"))
    if t is None:
        return None
    for key in ("page", "search", "form", "chat", "custom", "device", "traffic"):
        if key in e and e[key] is not None and not isinstance(e[key], dict):
            return None
    required = TYPE_OBJECT[e["type"]]
    if not e.get(required):
        return None
    page = e.get("page")
    if page is not None and not isinstance(page.get("url"), str):
        return None
    form = e.get("form")
    if form is not None and (not isinstance(form.get("form_id"), str)
                             or form.get("action") not in FORM_ACTIONS):
        return None
    chat = e.get("chat")
    if chat is not None and chat.get("action") not in CHAT_ACTIONS:
        return None
    custom = e.get("custom")
    if custom is not None and not (isinstance(custom.get("name"), str) and custom["name"]):
        return None
    if e["type"] == "search" and not isinstance(e["search"].get("query"), str):
        return None
    e["_ms"], e["_hour"], e["_weekday"] = t
    return e


def url_path(url):
    """The engine's `glob::url_path`: after the authority, before `?` or `#`."""
    i = url.find("://")
    if i >= 0:
        rest = url[i + 3:]
        j = rest.find("/")
        url = rest[j:] if j >= 0 else "/"
    for sep in "?#":
        k = url.find(sep)
        if k >= 0:
            url = url[:k]
    return url


def read_traffic(directory):
    """Raw lines and decoded records of one generated traffic directory."""
    ev_lines = (directory / "events.jsonl").read_text().splitlines()
    co_lines = (directory / "consent.jsonl").read_text().splitlines()
    events = [decode_event(line) for line in ev_lines]
    consent = []
    for line in co_lines:
        c = json.loads(line)
        t = parse_time(c.get("timestamp"))
        if t is None:
            sys.exit(f"unexpected consent record in {directory}: {line}")
        grants = (not c.get("erase")) and bool((c.get("purposes") or {}).get("tracking"))
        consent.append((c["visitor_id"], t[0], grants))
    return ev_lines, co_lines, events, consent


def simple_consent_visitors(events, consent):
    """Visitors whose first consent record (by time) grants tracking at or before their
    first valid event, with their records in time order."""
    first_event = {}
    for e in events:
        if e is not None:
            v = e["visitor_id"]
            first_event[v] = min(first_event.get(v, e["_ms"]), e["_ms"])
    records = defaultdict(list)
    for v, ms, grants in consent:
        records[v].append((ms, grants))
    keep = {}
    for v, recs in records.items():
        recs.sort(key=lambda r: r[0])  # stable: file order at equal times
        if v in first_event and recs[0][1] and recs[0][0] <= first_event[v]:
            keep[v] = recs
    return keep


def write_filtered(directory, out, ev_lines, co_lines, events, keep):
    """Both files restricted to `keep`'s visitors; malformed event lines are kept (the
    engine dead-letters them whoever they claim to be)."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "events.jsonl", "w") as f:
        for line, e in zip(ev_lines, events):
            if e is None or e["visitor_id"] in keep:
                f.write(line + "\n")
    with open(out / "consent.jsonl", "w") as f:
        for line in co_lines:
            if json.loads(line)["visitor_id"] in keep:
                f.write(line + "\n")
    return out / "events.jsonl", out / "consent.jsonl"


# ----------------------------------------------------------------- sessions

def compile_outcomes(cfg):
    """Predicates of the config's [[outcomes]] achieved_when (all given fields match)."""
    out = []
    for o in cfg["outcomes"]:
        w = o["achieved_when"]
        pattern = None
        if "url_path" in w:
            pattern = re.compile(
                ".*".join(re.escape(p) for p in w["url_path"].split("*")), re.DOTALL)

        def achieves(e, path, w=w, pattern=pattern):
            if "event_type" in w and e["type"] != w["event_type"]:
                return False
            if pattern is not None and (path is None or not pattern.fullmatch(path)):
                return False
            form = e.get("form")
            if "form_id" in w and (form is None or form.get("form_id") != w["form_id"]):
                return False
            if "form_action" in w and (form is None or form.get("action") != w["form_action"]):
                return False
            custom = e.get("custom")
            if "custom_name" in w and (custom is None or custom.get("name") != w["custom_name"]):
                return False
            return True
        out.append((o["name"], achieves))
    return out


def sessions_of(events, keep, cfg):
    """The engine's sessions of the kept visitors' processed events, each a list of events
    in processing order. Order: by time, consent before events at equal times, file order
    otherwise (the replay merge)."""
    timeout = cfg["sessions"]["inactivity_timeout_secs"] * 1000
    lateness = cfg["sessions"]["allowed_lateness_secs"] * 1000
    by_visitor = defaultdict(list)
    for e in events:
        if e is not None and e["visitor_id"] in keep:
            by_visitor[e["visitor_id"]].append(e)
    sessions = []
    for v, evs in by_visitor.items():
        evs.sort(key=lambda e: e["_ms"])  # stable
        recs = keep[v]
        r = 0
        granted = False
        current = None  # (list, explicit, id, last_ms, seen ids)
        newest = None
        for e in evs:
            t = e["_ms"]
            while r < len(recs) and recs[r][0] <= t:
                if not recs[r][1] and granted:
                    current = None  # revocation or erasure forgets the session
                    newest = None
                granted = recs[r][1]
                r += 1
            if not granted:
                continue
            if newest is not None and t < newest - lateness:
                continue
            sid = e.get("session_id")
            if current is None:
                new = True
            elif sid is not None:
                new = not (current[1] and current[2] == sid)
            else:
                new = current[1] or t - current[3] > timeout
            if new:
                current = [[], sid is not None, sid, t, set()]
                sessions.append((v, current[0]))
            if e["event_id"] in current[4]:
                continue
            current[4].add(e["event_id"])
            current[0].append(e)
            current[3] = max(current[3], t)
            newest = t if newest is None else max(newest, t)
    return sessions


def category_matchers(cfg):
    matchers = []
    for c in cfg["features"]["page_categories"]:
        matchers += [(p, c["name"], False) for p in c.get("prefixes", [])]
        matchers += [(p, c["name"], True) for p in c.get("exact", [])]
    # Longest first; at equal length exact before prefix (the engine's order).
    matchers.sort(key=lambda m: (-len(m[0]), not m[2]))
    return matchers


def category_of(path, matchers):
    for p, name, exact in matchers:
        if (path == p) if exact else path.startswith(p):
            return name
    return "other"


def session_features(evs, matchers, max_dwell):
    """Aggregates of a session's events (all of them: the caller truncates)."""
    f = defaultdict(float)
    f["events.total"] = len(evs)
    f["log_events"] = math.log1p(len(evs))
    pages = set()
    current_cat = None
    for i, e in enumerate(evs):
        f["type." + e["type"]] += 1
        page = e.get("page")
        if page:
            path = url_path(page["url"])
            cat = category_of(path, matchers)
            pages.add(path)
            if e["type"] == "page_view":
                f["views." + cat] += 1
                current_cat = cat
                if i + 1 < len(evs):
                    dwell = min((evs[i + 1]["_ms"] - e["_ms"]) / 1000, max_dwell)
                    f["dwell." + cat] += dwell
        form = e.get("form")
        if form:
            f[f"form.{form['form_id']}.{form['action']}"] += 1
            key = f"form.{form['form_id']}.max_fields"
            f[key] = max(f[key], form.get("fields_completed") or 0)
        chat = e.get("chat")
        if chat:
            f["chat." + chat["action"]] += 1
        if e["type"] == "search":
            f["search.count"] += 1
            if e["search"].get("results") == 0:
                f["search.without_results"] += 1
        custom = e.get("custom")
        if custom:
            f["custom." + custom["name"]] += 1
    first, last = evs[0], evs[-1]
    duration = (last["_ms"] - first["_ms"]) / 1000
    f["duration_secs"] = duration
    f["log_duration"] = math.log1p(max(duration, 0.0))
    f["distinct_pages"] = len(pages)
    f["current_page=" + (current_cat or "none")] = 1
    f["last_type=" + last["type"]] = 1
    device = last.get("device") or {}
    f["device=" + str(device.get("category", "unknown"))] = 1
    f["browser=" + str(device.get("browser", "unknown"))] = 1
    f["os=" + str(device.get("os", "unknown"))] = 1
    traffic = next((e["traffic"] for e in evs if e.get("traffic")), None) or {}
    f["source=" + str(traffic.get("source", "unknown")).lower()] = 1
    f["medium=" + str(traffic.get("medium", "unknown")).lower()] = 1
    angle = 2 * math.pi * last["_hour"] / 24
    f["hour_sin"] = math.sin(angle)
    f["hour_cos"] = math.cos(angle)
    f["weekend"] = 1.0 if last["_weekday"] >= 5 else 0.0
    return f


def session_rows(sessions, outcomes, matchers, max_dwell):
    """Per outcome: (features, label, key, id of the last scored event) of every session
    with at least one scored event, features over the events before the outcome."""
    rows = [[] for _ in outcomes]
    for n, (v, evs) in enumerate(sessions):
        paths = [url_path(e["page"]["url"]) if e.get("page") else None for e in evs]
        for o, (_, achieves) in enumerate(outcomes):
            k = next((i for i, e in enumerate(evs) if achieves(e, paths[i])), None)
            cut = len(evs) if k is None else k
            if cut == 0:
                continue  # the first event achieves it: no scored row, not counted
            rows[o].append((session_features(evs[:cut], matchers, max_dwell),
                            k is not None, f"{v}#{n}", evs[cut - 1]["event_id"], evs[:cut]))
    return rows


def prefix_matrix(rows, vec, matchers, max_dwell):
    """`--also-prefix-rows`: one row per scored event (every prefix of every session, as
    Propensity trains), each session's label, and the validation mask by session."""
    xs, ys, vals = [], [], []
    for feats, label, key, _, evs in rows:
        x = vec.transform([session_features(evs[:j], matchers, max_dwell)
                           for j in range(1, len(evs) + 1)])
        xs.append(x.astype(np.float32))
        ys += [label] * len(evs)
        vals += [in_validation(key)] * len(evs)
    return np.vstack(xs), np.array(ys), np.array(vals)


# ------------------------------------------------------------------ metrics

def calibration_table(p, y, bins=10):
    """metrics.rs `calibration_table`: equal-width bins, empty ones dropped."""
    idx = np.minimum((np.clip(p, 0.0, 1.0) * bins).astype(int), bins - 1)
    table = []
    for b in range(bins):
        m = idx == b
        if m.any():
            table.append({"count": int(m.sum()), "mean_predicted": float(p[m].mean()),
                          "observed_rate": float(y[m].mean())})
    return table


def ece(table):
    """summaries.rs `expected_calibration_error`: count-weighted |observed - predicted|."""
    n = sum(b["count"] for b in table)
    if n == 0:
        return float("nan")
    return sum(b["count"] * abs(b["observed_rate"] - b["mean_predicted"]) for b in table) / n


def in_validation(key):
    h = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
    return h / 2**64 < VALIDATION_FRACTION


def fit_sklearn(train_rows, prefix=None):
    """StandardScaler + LogisticRegression(lbfgs); C by validation AUC (ties to the
    stronger penalty), then refit on all training sessions. One row per session, or with
    `prefix = (matchers, max_dwell)` one row per scored event of the sessions."""
    vec = DictVectorizer(sparse=False)
    x = vec.fit_transform([r[0] for r in train_rows])
    y = np.array([r[1] for r in train_rows])
    val = np.array([in_validation(r[2]) for r in train_rows])
    if prefix is not None:
        x, y, val = prefix_matrix(train_rows, vec, *prefix)
    grid = []
    for c in C_GRID:
        model = make_pipeline(StandardScaler(),
                              LogisticRegression(C=c, solver="lbfgs", max_iter=1000))
        model.fit(x[~val], y[~val])
        grid.append((roc_auc_score(y[val], model.predict_proba(x[val])[:, 1]), -c, c))
    _, _, best_c = max(grid)
    model = make_pipeline(StandardScaler(),
                          LogisticRegression(C=best_c, solver="lbfgs", max_iter=1000))
    model.fit(x, y)
    return vec, model, best_c, {c: round(a, 4) for a, _, c in grid}


# --------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default="target/release/propensity", help="propensity binary")
    ap.add_argument("--config", help="configuration file (default: the embedded one)")
    ap.add_argument("--train-visitors", type=int, default=20000)
    ap.add_argument("--eval-visitors", type=int, default=8000)
    ap.add_argument("--train-seed", type=int, default=11)
    ap.add_argument("--eval-seed", type=int, default=29)
    ap.add_argument("--train-span-secs", type=int, default=3600)
    ap.add_argument("--eval-span-secs", type=int, default=21600)
    ap.add_argument("--eval-invalid-rate", type=float, default=0.02)
    ap.add_argument("--workdir", type=Path,
                    help="work and keep files here (default: a temp dir, removed on success)")
    ap.add_argument("--also-prefix-rows", action="store_true",
                    help="also fit scikit-learn on one row per scored event (every session "
                         "prefix, as Propensity trains) and add its columns")
    args = ap.parse_args()
    if args.train_seed == args.eval_seed:
        sys.exit("--train-seed and --eval-seed must differ")
    warnings.simplefilter("ignore", ConvergenceWarning)
    t_total = time.perf_counter()
    binary = Path(args.bin).resolve()
    config = str(Path(args.config).resolve()) if args.config else None
    cfg_args = ["--config", config] if config else []
    work = args.workdir or Path(tempfile.mkdtemp(prefix="propensity-holdout-"))
    work.mkdir(parents=True, exist_ok=True)
    cfg = load_config(binary, config)
    if cfg["consent"]["mode"] != "opt_in":
        print("note: consent.mode is not opt_in; the simplified gate is still exact for the "
              "kept visitors (their first record grants before their first event)",
              file=sys.stderr)
    outcomes = compile_outcomes(cfg)
    matchers = category_matchers(cfg)
    max_dwell = cfg["features"]["max_dwell_secs"]

    # 1. traffic
    shapes = {
        "train": (args.train_seed, args.train_visitors, args.train_span_secs, 0.0),
        "eval": (args.eval_seed, args.eval_visitors, args.eval_span_secs,
                 args.eval_invalid_rate),
    }
    files, decoded, kept = {}, {}, {}
    for name, (seed, visitors, span, invalid) in shapes.items():
        raw = work / f"{name}-raw"
        run([binary, "-q", *cfg_args, "generate", "--visitors", visitors, "--seed", seed,
             "--span-secs", span, "--invalid-rate", invalid, "--out", raw], f"generate {name}")
        ev_lines, co_lines, events, consent = read_traffic(raw)
        keep = simple_consent_visitors(events, consent)
        files[name] = write_filtered(raw, work / name, ev_lines, co_lines, events, keep)
        decoded[name], kept[name] = events, keep
        total = len({e["visitor_id"] for e in events if e is not None})
        print(f"{name}: seed {seed}, {visitors} visitors over {span} s, invalid rate "
              f"{invalid}: {len(ev_lines)} event lines ({sum(e is None for e in events)} "
              f"malformed), {len(keep)}/{total} visitors with consent before their first "
              f"event kept", file=sys.stderr)

    # 2. Propensity: train, evaluate
    models = work / "models"
    train_ev, train_co = files["train"]
    done, rust_secs = run([binary, "-q", *cfg_args, "train", "--events", train_ev,
                           "--consent", train_co, "--out", models], "propensity train")
    for line in done.stderr.splitlines():
        if line.startswith("warning:"):
            print(f"propensity train {line}", file=sys.stderr)
    eval_ev, eval_co = files["eval"]
    report = work / "report"
    done, _ = run([binary, "-q", *cfg_args, "evaluate", "--events", eval_ev,
                   "--consent", eval_co, "--models", models, "--report", report],
                  "propensity evaluate")
    (work / "evaluate.txt").write_text(done.stdout)
    evaluation = {o["outcome"]: o for o in
                  json.loads((report / "evaluation.json").read_text())["outcomes"]}
    scores_file = work / "eval-scores.jsonl"
    run([binary, "-q", *cfg_args, "replay", "--events", eval_ev, "--consent", eval_co,
         "--models", models, "--offers-out", work / "eval-offers.jsonl",
         "--scores-out", scores_file], "propensity replay (cross-check)")

    # 3. scikit-learn
    start = time.perf_counter()
    train_rows = session_rows(sessions_of(decoded["train"], kept["train"], cfg),
                              outcomes, matchers, max_dwell)
    feature_secs = time.perf_counter() - start
    fitted = []
    fit_start = time.perf_counter()
    for o in range(len(outcomes)):
        fitted.append(fit_sklearn(train_rows[o]))
    fit_secs = time.perf_counter() - fit_start
    sk_secs = feature_secs + fit_secs
    prefix_fitted, prefix_secs = [], 0.0
    if args.also_prefix_rows:
        start = time.perf_counter()
        for o in range(len(outcomes)):
            prefix_fitted.append(fit_sklearn(train_rows[o], (matchers, max_dwell)))
        prefix_secs = time.perf_counter() - start
    eval_rows = session_rows(sessions_of(decoded["eval"], kept["eval"], cfg),
                             outcomes, matchers, max_dwell)

    # Propensity's scores per (event, outcome), for the cross-check.
    last_score = {}
    with open(scores_file) as f:
        for line in f:
            s = json.loads(line)
            last_score[(s["event_id"], s["outcome"])] = s["probability"]

    header = (f"{'outcome':<22} {'sessions':>9} {'positives':>9} {'AUC propensity':>15} "
              f"{'AUC sklearn':>12} {'ECE propensity':>15} {'ECE sklearn':>12} "
              f"{'ECE/event prop.':>16}"
              + (f" {'AUC sk/prefix':>14} {'ECE sk/prefix':>14}" if prefix_fitted else ""))
    lines, notes = [header], []
    for o, (name, _) in enumerate(outcomes):
        rows = eval_rows[o]
        y = np.array([r[1] for r in rows])
        vec, model, best_c, grid = fitted[o]
        p = model.predict_proba(vec.transform([r[0] for r in rows]))[:, 1]
        sk_auc = roc_auc_score(y, p)
        sk_ece = ece(calibration_table(p, y))
        extra, prefix_note = "", None
        if prefix_fitted:
            pvec, pmodel, pc, _ = prefix_fitted[o]
            pp = pmodel.predict_proba(pvec.transform([r[0] for r in rows]))[:, 1]
            extra = f" {roc_auc_score(y, pp):>14.4f} {ece(calibration_table(pp, y)):>14.4f}"
            prefix_note = f"  {name}: sklearn on prefix rows: C={pc}"
        ev = evaluation.get(name)
        if ev is None:
            lines.append(f"{name:<22} {len(rows):>9} {int(y.sum()):>9} {'(no model)':>15} "
                         f"{sk_auc:>12.4f} {'-':>15} {sk_ece:>12.4f}")
            continue
        ps = ev["per_session"]
        p_count, p_pos = ps["count"], round(ps["base_rate"] * ps["count"])
        sessions = str(len(rows)) if p_count == len(rows) else f"{p_count}/{len(rows)}"
        positives = str(int(y.sum())) if p_pos == y.sum() else f"{p_pos}/{int(y.sum())}"
        from_bins = ece(ps["calibration"])
        per_event = ece(ev["per_event"]["calibration"])
        lines.append(f"{name:<22} {sessions:>9} {positives:>9} {ps['auc']:>15.4f} "
                     f"{sk_auc:>12.4f} {from_bins:>15.4f} {sk_ece:>12.4f} {per_event:>16.4f}"
                     + extra)
        # Cross-check: Propensity's session scores for the Python session set.
        rp = [last_score.get((r[3], name)) for r in rows]
        missing = sum(v is None for v in rp)
        if missing == 0:
            rp = np.array(rp)
            re_auc, re_ece = roc_auc_score(y, rp), ece(calibration_table(rp, y))
            agree = abs(re_auc - ps["auc"]) < 1e-6 and abs(re_ece - from_bins) < 1e-6
            notes.append(f"  {name}: sklearn C={best_c} (validation AUC {grid}); "
                         f"Propensity re-derived on the Python sessions: AUC {re_auc:.6f} "
                         f"ECE {re_ece:.6f} ({'equal to' if agree else 'DIFFERS from'} "
                         f"evaluate's {ps['auc']:.6f} / {from_bins:.6f})")
        else:
            notes.append(f"  {name}: sklearn C={best_c}; {missing} Python sessions have no "
                         f"Propensity score: the session sets DIFFER")
        if prefix_note:
            notes.append(prefix_note)
        if p_count != len(rows) or p_pos != y.sum():
            notes.append(f"  {name}: session counts differ (propensity {p_count}/{p_pos} "
                         f"positives, python {len(rows)}/{int(y.sum())})")

    print()
    print(f"evaluation traffic: seed {args.eval_seed}, {args.eval_visitors} visitors over "
          f"{args.eval_span_secs} s, invalid rate {args.eval_invalid_rate}; models trained on "
          f"seed {args.train_seed}, {args.train_visitors} visitors over {args.train_span_secs} s")
    print("session AUC and ECE per session: last score before the outcome (or session end), "
          "label = outcome reached; ECE 10 equal-width bins")
    print("\n".join(lines))
    print("\n".join(notes))
    print(f"training wall time: propensity train {rust_secs:.2f} s (whole process); "
          f"scikit-learn {sk_secs:.2f} s ({feature_secs:.2f} s features from JSON + "
          f"{fit_secs:.2f} s for {len(C_GRID)} grid fits and a refit per outcome); "
          f"training sessions: {len(train_rows[0])}")
    if prefix_fitted:
        print(f"scikit-learn on prefix rows: {prefix_secs:.2f} s more (prefix features + fits)")
    if args.workdir:
        print(f"total {time.perf_counter() - t_total:.1f} s; files in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
        print(f"total {time.perf_counter() - t_total:.1f} s (--workdir DIR keeps the files)")


if __name__ == "__main__":
    main()
