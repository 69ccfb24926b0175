//! One plain HTTP GET on loopback, for the instances' endpoints and for
//! the Prometheus server some tests start: no client library, so what a
//! test sees is exactly the status line and body the server wrote.

use std::io::{Read, Write};
use std::time::Duration;

/// `GET path` on `127.0.0.1:port` with extra header lines (each ending in
/// `\r\n`): (status, body), or the connection error. HTTP/1.0, so the
/// server closes after its answer and never chunks it (Go's server, which
/// Prometheus uses, chunks larger HTTP/1.1 bodies).
pub fn http_get(port: u16, path: &str, headers: &str) -> std::io::Result<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n{headers}\r\n")?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}
