//! The operations HTTP endpoints of `propensity run`: `/metrics`
//! (Prometheus text format), `/healthz` (the process is alive), `/readyz`
//! (ready to process, or what is missing) and the admin API (bearer token
//! from `http.admin_token`, off when no token is configured):
//! `GET /v1/visitors/{visitor_id}` (data-subject access) and
//! `GET /v1/models` (each outcome's champion and challenger with their
//! online evaluation). Plain hyper on the tokio runtime, away from the
//! pipeline thread.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use propensity_engine::ModelRole;
use propensity_kafka::access::{AccessAnswer, AccessRequest};
use propensity_kafka::{ModelHandle, PipelineMetrics, RuntimeStatus};
use serde_json::json;
use tokio::net::TcpListener;

/// What the endpoints read.
pub struct HttpState {
    /// Pipeline status.
    pub status: Arc<RuntimeStatus>,
    /// Metrics registry.
    pub metrics: Arc<PipelineMetrics>,
    /// Whether models are loaded.
    pub models_loaded: bool,
    /// Admin bearer token (empty: admin endpoints off).
    pub admin_token: String,
    /// Where access requests go.
    pub access: Sender<AccessRequest>,
    /// The models in use.
    pub models: Arc<ModelHandle>,
    /// The configured outcomes, in order.
    pub outcomes: Vec<String>,
}

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    respond(status, "application/json", body.to_string())
}

/// Whether the given bearer token is the configured one. Both are hashed
/// first and the digests compared in constant time, so neither the
/// token's bytes nor its length can be learned from response times.
fn token_matches(given: &[u8], expected: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    Sha256::digest(given)
        .ct_eq(&Sha256::digest(expected))
        .into()
}

/// Percent-decodes a path segment (visitor ids may contain anything);
/// `None` when the result is not UTF-8. A `%` not followed by two hex
/// digits stays as it is.
fn percent_decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

async fn handle(
    state: Arc<HttpState>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::GET {
        return Ok(json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"error": "only GET is supported"}),
        ));
    }
    let path = req.uri().path().to_owned();
    let s = &state.status;
    Ok(match path.as_str() {
        "/metrics" => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            state.metrics.render(s),
        ),
        "/healthz" => json_response(StatusCode::OK, json!({"status": "alive"})),
        "/readyz" => {
            let restored = s.ready.load(Ordering::Relaxed);
            let broker = s.broker_reachable.load(Ordering::Relaxed);
            let assigned = s.assigned_partitions.load(Ordering::Relaxed);
            let restoring = s.restoring_partitions.load(Ordering::Relaxed);
            let mut missing = Vec::new();
            if !state.models_loaded {
                missing.push("models are not loaded");
            }
            if !restored {
                missing.push("partitions are not assigned and restored yet");
            }
            if !broker {
                missing.push("the Kafka broker is not reachable");
            }
            let stalled = s
                .stalled_partitions
                .lock()
                .map(|v| v.clone())
                .unwrap_or_default();
            let stall_reason = (!stalled.is_empty()).then(|| {
                format!("partitions {stalled:?} have lag and have committed nothing within kafka.stall_timeout_secs")
            });
            if let Some(reason) = &stall_reason {
                missing.push(reason.as_str());
            }
            let ready = missing.is_empty();
            let last_error = s.last_error.lock().ok().and_then(|e| e.clone());
            json_response(
                if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                },
                json!({
                    "ready": ready,
                    "missing": missing,
                    "models_loaded": state.models_loaded,
                    "assigned_partitions": assigned,
                    "restoring_partitions": restoring,
                    "broker_reachable": broker,
                    "stalled_partitions": stalled,
                    "last_error": last_error,
                }),
            )
        }
        p if p.starts_with("/v1/visitors/") => match admin_refusal(&state, &req) {
            Some(refusal) => refusal,
            None => visitor(&state, &p["/v1/visitors/".len()..]).await,
        },
        "/v1/models" => admin_refusal(&state, &req).unwrap_or_else(|| model_status(&state)),
        _ => json_response(StatusCode::NOT_FOUND, json!({"error": "no such endpoint"})),
    })
}

/// The answer to an admin request without the right token (`None`: let it
/// through).
fn admin_refusal(
    state: &HttpState,
    req: &Request<hyper::body::Incoming>,
) -> Option<Response<Full<Bytes>>> {
    if state.admin_token.is_empty() {
        return Some(json_response(
            StatusCode::NOT_FOUND,
            json!({"error": "admin endpoints are disabled: set http.admin_token to enable them"}),
        ));
    }
    let given = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    (!token_matches(given.as_bytes(), state.admin_token.as_bytes())).then(|| {
        json_response(
            StatusCode::UNAUTHORIZED,
            json!({"error": "missing or wrong bearer token"}),
        )
    })
}

/// `GET /v1/models`: per outcome and role, the model version served and
/// the online evaluation last published (absent below
/// `kafka.online_eval_min_sessions`).
fn model_status(state: &HttpState) -> Response<Full<Bytes>> {
    let models = state.models.current();
    let evaluation = state
        .status
        .online_evaluation
        .lock()
        .map(|e| e.clone())
        .unwrap_or_default();
    let n = state.outcomes.len();
    let outcomes: Vec<_> = state
        .outcomes
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mut entry = json!({ "outcome": name });
            for (r, role) in ModelRole::ALL.iter().enumerate() {
                entry[role.as_str()] = match models.in_role(i, *role) {
                    None => serde_json::Value::Null,
                    Some(m) => {
                        let e = evaluation.get(r * n + i).and_then(Option::as_ref);
                        json!({
                            "model_version": m.version,
                            "sessions": e.map(|e| e.sessions),
                            "achieved": e.map(|e| e.positives),
                            "auc": e.and_then(|e| e.auc),
                            "log_loss": e.map(|e| e.log_loss),
                            "brier": e.map(|e| e.brier),
                        })
                    }
                };
            }
            entry
        })
        .collect();
    json_response(StatusCode::OK, json!({ "outcomes": outcomes }))
}

async fn visitor(state: &HttpState, raw_id: &str) -> Response<Full<Bytes>> {
    let Some(visitor_id) = percent_decode(raw_id).filter(|v| !v.is_empty()) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"error": "the visitor id is not valid percent-encoded UTF-8"}),
        );
    };
    let (tx, rx) = std::sync::mpsc::channel();
    if state
        .access
        .send(AccessRequest {
            visitor_id: visitor_id.clone(),
            reply: tx,
        })
        .is_err()
    {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "the pipeline is not running"}),
        );
    }
    let answer =
        tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(10))).await;
    match answer {
        Ok(Ok(AccessAnswer::Owned { partition, held })) => json_response(
            StatusCode::OK,
            json!({"visitor_id": visitor_id, "partition": partition, "held": held}),
        ),
        Ok(Ok(AccessAnswer::OwnedElsewhere {
            partition,
            owned_here,
        })) => json_response(
            StatusCode::MISDIRECTED_REQUEST,
            json!({
                "visitor_id": visitor_id,
                "partition": partition,
                "owned_here": owned_here,
                "error": format!("partition {partition} is owned by another instance; ask the instance that owns it"),
            }),
        ),
        _ => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "the pipeline did not answer in time"}),
        ),
    }
}

/// Serves on a bound listener until the process ends.
pub async fn serve(listener: TcpListener, state: Arc<HttpState>) -> std::io::Result<()> {
    let addr: SocketAddr = listener.local_addr()?;
    tracing::info!(%addr, "http endpoints listening");
    loop {
        let (stream, _) = listener.accept().await?;
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(state.clone(), req));
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "http connection error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_ids() {
        assert!(token_matches(b"abc", b"abc"));
        assert!(!token_matches(b"abd", b"abc"));
        assert!(!token_matches(b"ab", b"abc"));
        assert_eq!(percent_decode("v%2F1").as_deref(), Some("v/1"));
        assert_eq!(percent_decode("%zz").as_deref(), Some("%zz"));
        assert_eq!(percent_decode("%ff"), None, "not UTF-8");
    }
}
