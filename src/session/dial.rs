//! Opening the socket: the upgrade request with the protocol's headers, TLS, the
//! size limit and `connect_timeout`, abandoned for any command but a repeated `Run`.

use super::Command;
use super::connection::{Socket, describe_error};
use crate::config::SourceConfig;
use crate::protocol::Protocol;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue, header::USER_AGENT};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Why no socket opened.
pub(super) enum DialError {
    /// The attempt failed; the words an operator can act on (not yet redacted).
    Failed(String),
    /// A command other than `Run` came first; the attempt was abandoned.
    Interrupted,
}

/// Opens a WebSocket to `url` for `protocol`.
pub(super) async fn dial(
    url: &url::Url,
    protocol: &dyn Protocol,
    config: &SourceConfig,
    commands: &mut watch::Receiver<Command>,
) -> Result<Socket, DialError> {
    let failed = DialError::Failed;
    let mut req = url
        .as_str()
        .into_client_request()
        .map_err(|e| failed(describe_error(&e)))?;
    let mut has_agent = false;
    for (k, v) in protocol.connect_headers() {
        let (Ok(name), Ok(value)) = (
            HeaderName::try_from(k.as_str()),
            HeaderValue::try_from(v.as_str()),
        ) else {
            return Err(failed(format!("header `{k}` is not a valid HTTP header")));
        };
        has_agent |= name == USER_AGENT;
        req.headers_mut().insert(name, value);
    }
    if !has_agent && let Ok(v) = HeaderValue::try_from(crate::config::default_user_agent()) {
        req.headers_mut().insert(USER_AGENT, v);
    }
    // `max_message_bytes` bounds an upstream *message*: where a protocol frames its
    // messages inside WebSocket messages, the frame is larger than the message it
    // carries, and the exact limit is enforced by the protocol's framer; a limit of
    // `max_message_bytes` here would refuse a message of exactly that size.
    let max = (config.timing.max_message_bytes).saturating_add(protocol.frame_overhead());
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max));
    // wss:// trusts the OS store plus the source's ca_file (see crate::tls).
    let connector = match url.scheme() {
        "wss" => Some(tokio_tungstenite::Connector::Rustls(
            crate::tls::client_config(config.ca_file.as_deref())
                .map_err(|e| failed(e.to_string()))?,
        )),
        _ => None,
    };
    let connect =
        tokio_tungstenite::connect_async_tls_with_config(req, Some(ws_config), true, connector);
    let timeout = config.timing.connect_timeout;
    tokio::select! {
        r = tokio::time::timeout(timeout, connect) => match r {
            Ok(Ok((ws, _resp))) => Ok(ws),
            Ok(Err(e)) => Err(failed(refusal(&e, protocol.refusal_headers()))),
            Err(_) => Err(failed(format!("no connection within {}", humantime::format_duration(timeout)))),
        },
        // A repeated Run (SIGUSR2 while running) must not abort a connect.
        _ = commands.wait_for(|c| *c != Command::Run) => Err(DialError::Interrupted),
    }
}

/// A failed upgrade in words, quoting the response headers the protocol names as
/// the server's explanation of a refusal.
fn refusal(e: &tokio_tungstenite::tungstenite::Error, hints: &[&str]) -> String {
    let mut text = describe_error(e);
    if let tokio_tungstenite::tungstenite::Error::Http(resp) = e {
        for name in hints {
            if let Some(v) = resp.headers().get(*name).and_then(|v| v.to_str().ok()) {
                text.push_str(&format!(" ({name}: {v})"));
            }
        }
    }
    text
}
