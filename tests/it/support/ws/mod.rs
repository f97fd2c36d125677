//! Small WebSocket client helpers shared by the `sim_*` tests: a plain
//! tokio-tungstenite client, independent of wsvault's own client code.

pub mod navixy;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Generous upper bound for anything that should happen "soon".
pub const SOON: Duration = Duration::from_secs(5);

pub async fn connect(url: &str) -> Client {
    connect_ua(url, Some("sim-test/1.0")).await.unwrap()
}

/// Connects with the given User-Agent (or none at all).
pub async fn connect_ua(url: &str, ua: Option<&str>) -> Result<Client, WsError> {
    let mut req = url.into_client_request()?;
    if let Some(ua) = ua {
        req.headers_mut().insert("User-Agent", ua.parse().unwrap());
    }
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
}

/// The next text frame within `within`, skipping pings/pongs; `None` on timeout,
/// close or error.
pub async fn next_text(ws: &mut Client, within: Duration) -> Option<String> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Some(t.to_string()),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            _ => return None,
        }
    }
}

/// The next text frame parsed as JSON (panics if none arrives or it is not JSON).
pub async fn next_json(ws: &mut Client) -> serde_json::Value {
    let text = next_text(ws, SOON).await.expect("a frame");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

pub async fn send(ws: &mut Client, text: &str) {
    ws.send(Message::text(text)).await.unwrap();
}

/// How a connection ended, as seen by the client.
#[derive(Debug, PartialEq)]
pub enum Ending {
    /// The server sent a close frame.
    CloseFrame,
    /// The TCP stream ended without a close frame.
    Reset,
    /// Nothing happened within the time limit.
    StillOpen,
}

/// Reads (discarding data frames) until the connection ends or `within` passes.
pub async fn wait_end(ws: &mut Client, within: Duration) -> Ending {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return Ending::StillOpen,
            Ok(Some(Ok(Message::Close(_)))) => return Ending::CloseFrame,
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_))) | Ok(None) => return Ending::Reset,
        }
    }
}

/// Whether no data frame at all arrives within `within` (pings count as frames).
pub async fn quiet_for(ws: &mut Client, within: Duration) -> bool {
    tokio::time::timeout(within, ws.next()).await.is_err()
}
