//! Minimal HTTP/1.1 plumbing shared by the simulators: read one request head,
//! answer a plain request by hand, or complete a WebSocket upgrade.
//!
//! The simulators need to see the raw request head (to tell an upgrade from a
//! login call on the same port, to refuse an upgrade with 403/501, to record
//! headers), which a generic WebSocket `accept` hides. This module never
//! interprets a protocol and never keeps a connection alive after a plain answer.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

/// The server side of one simulated WebSocket connection.
pub(crate) type Ws = WebSocketStream<TcpStream>;

/// Largest request head accepted; a real client's head is well under this.
const MAX_HEAD: usize = 32 * 1024;
/// Largest plain request body accepted (login calls are tiny).
const MAX_BODY: usize = 1024 * 1024;
/// How long a client may take to send its request head or body.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The parsed head of one HTTP request.
#[derive(Debug, Clone)]
pub(crate) struct RequestHead {
    /// Path plus query, exactly as sent.
    pub target: String,
    /// Headers in order, names as sent.
    pub headers: Vec<(String, String)>,
}

impl RequestHead {
    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The raw query string, if any.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// Decoded query parameters, in order.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        self.query()
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// First value of query parameter `name` (case-sensitive, as servers are).
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query_pairs()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether this request asks for a WebSocket upgrade.
    pub fn is_websocket_upgrade(&self) -> bool {
        self.header("upgrade")
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
            && self.header("sec-websocket-key").is_some()
    }

    fn content_length(&self) -> usize {
        self.header("content-length")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// Reads one request head. Returns `None` when the peer closed or sent garbage
/// before completing a head (nothing to answer), and the bytes read past the head.
pub(crate) async fn read_head(stream: &mut TcpStream) -> Option<(RequestHead, Vec<u8>)> {
    let mut buf = Vec::with_capacity(1024);
    let end = loop {
        if let Some(pos) = find_head_end(&buf) {
            break pos;
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
        let mut chunk = [0u8; 4096];
        let n = match tokio::time::timeout(READ_TIMEOUT, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return None,
        };
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = parse_head(&buf[..end])?;
    Some((head, buf[end + 4..].to_vec()))
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

fn parse_head(raw: &[u8]) -> Option<RequestHead> {
    let text = std::str::from_utf8(raw).ok()?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let _method = first.next()?;
    let target = first.next()?.to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Some(RequestHead { target, headers })
}

/// Reads the request body announced by Content-Length (bounded).
pub(crate) async fn read_body(
    stream: &mut TcpStream,
    head: &RequestHead,
    mut leftover: Vec<u8>,
) -> std::io::Result<Vec<u8>> {
    let want = head.content_length().min(MAX_BODY);
    while leftover.len() < want {
        let mut chunk = vec![0u8; want - leftover.len()];
        let n = tokio::time::timeout(READ_TIMEOUT, stream.read(&mut chunk))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "body read"))??;
        if n == 0 {
            break;
        }
        leftover.extend_from_slice(&chunk[..n]);
    }
    leftover.truncate(want);
    Ok(leftover)
}

/// Writes a complete HTTP/1.1 response with Content-Length and closes the write side.
pub(crate) async fn respond(
    stream: &mut TcpStream,
    status: u16,
    extra_headers: &[(&str, &str)],
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reason(status),
        body.len()
    );
    for (k, v) in extra_headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await?;
    stream.shutdown().await
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        _ => "Status",
    }
}

/// Completes the WebSocket handshake for `head` (which must be an upgrade) and
/// returns the server-side socket. Bytes already read past the head are kept.
pub(crate) async fn upgrade(
    mut stream: TcpStream,
    head: &RequestHead,
    leftover: Vec<u8>,
) -> std::io::Result<Ws> {
    let key = head.header("sec-websocket-key").unwrap_or_default();
    let accept = derive_accept_key(key.as_bytes());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    stream.write_all(response.as_bytes()).await?;
    stream.flush().await?;
    Ok(WebSocketStream::from_partially_read(stream, leftover, Role::Server, None).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_head_query_and_headers() {
        let raw = b"GET /v2/event/subscription?a=1&b=x%20y HTTP/1.1\r\nHost: h\r\nUpgrade: WebSocket\r\nSec-WebSocket-Key: k";
        let head = parse_head(raw).unwrap();
        assert_eq!(head.path(), "/v2/event/subscription");
        assert_eq!(head.query_param("b").as_deref(), Some("x y"));
        assert_eq!(head.header("upgrade"), Some("WebSocket"));
        assert!(head.is_websocket_upgrade());
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nrest"), Some(14));
    }
}
