//! Inbound messages to records and outputs: `event`, `response`, `error` and
//! anything else, with the raw-events policy (ARCHITECTURE.md §4) and warn-once.
//!
//! Runs after the transport ([`super`]) has produced one whole message; never sees
//! frames, heartbeats or the clock beyond `ctx`.

use super::{MAX_WARNED, NavixyProtocol, decode, fast, subscribe};
use crate::config::RawEvents;
use crate::protocol::{
    Ctx, Output, Protocol, event_record, link_message, session_event, text_as_json,
};
use crate::redact::Redactor;
use serde_json::Value;

impl NavixyProtocol {
    fn warn_once(&mut self, key: String, message: impl FnOnce() -> String, out: &mut Vec<Output>) {
        if self.warned.len() < MAX_WARNED && self.warned.insert(key) {
            out.push(Output::Warning(message()));
        }
    }

    fn keep_whole(&self, ctx: &Ctx, kind: &str, raw: &str, out: &mut Vec<Output>) {
        if let Some(r) = event_record(ctx, &self.opts, kind, raw.to_string(), None) {
            out.push(Output::Record(r));
        }
    }

    /// A message whose items all went to typed rows: envelope (message minus
    /// `data`, with the item count), whole message, or nothing, per `raw_events`.
    fn keep_typed(
        &self,
        ctx: &Ctx,
        kind: &str,
        raw: &str,
        envelope: impl FnOnce() -> String,
        n: usize,
        out: &mut Vec<Output>,
    ) {
        let row = match self.opts.raw_events {
            RawEvents::Off => None,
            RawEvents::Full => event_record(ctx, &self.opts, kind, raw.to_string(), None),
            RawEvents::Envelope => event_record(ctx, &self.opts, kind, envelope(), Some(n as i64)),
        };
        out.extend(row.map(Output::Record));
    }

    /// A data event the quick path ([`super::fast`]) decoded whole: the same
    /// outputs, in the same order, as the general path gives it.
    pub(super) fn on_data_event(
        &mut self,
        ctx: &Ctx,
        raw: &str,
        d: fast::Decoded,
        out: &mut Vec<Output>,
    ) {
        let fast::Decoded {
            name,
            items,
            envelope,
        } = d;
        let start = out.len();
        self.keep_typed(
            ctx,
            name,
            raw,
            || envelope.unwrap_or_default(),
            items.item_count,
            out,
        );
        out.extend(items.records.into_iter().map(Output::Record));
        link_message(ctx, &mut out[start..]);
        self.mark_subscribed(out);
    }

    fn redact(&self, text: &str) -> String {
        Redactor::new(self.secrets()).redact(text)
    }

    pub(super) fn malformed(&mut self, ctx: &Ctx, text: &str, error: &str, out: &mut Vec<Output>) {
        if let Some(r) = event_record(ctx, &self.opts, "malformed", text_as_json(text), None) {
            out.push(Output::Record(r));
        }
        out.push(Output::Warning(format!(
            "navixy: frame of {} bytes is not JSON ({error}); kept as kind \"malformed\" in events",
            text.len()
        )));
    }

    /// One parsed message; its typed rows are linked to its `events` row.
    pub(super) fn dispatch(&mut self, ctx: &Ctx, raw: &str, value: Value, out: &mut Vec<Output>) {
        let start = out.len();
        self.dispatch_unlinked(ctx, raw, value, out);
        link_message(ctx, &mut out[start..]);
    }

    fn dispatch_unlinked(&mut self, ctx: &Ctx, raw: &str, value: Value, out: &mut Vec<Output>) {
        match value.get("type").and_then(Value::as_str) {
            Some("event") => self.on_event(ctx, raw, value, out),
            Some("response") => self.on_response(ctx, raw, &value, out),
            Some("error") => self.on_error(ctx, raw, &value, out),
            other => {
                let kind = other.unwrap_or("unknown").to_string();
                self.keep_whole(ctx, &kind, raw, out);
                self.warn_once(
                    format!("type:{kind}"),
                    || {
                        format!(
                            "navixy: unknown frame type `{kind}`, kept raw in events (warned once)"
                        )
                    },
                    out,
                );
            }
        }
    }

    fn on_response(&mut self, ctx: &Ctx, raw: &str, v: &Value, out: &mut Vec<Output>) {
        self.keep_whole(ctx, "response", &self.redact(raw), out);
        let r = subscribe::read_response(ctx, v);
        out.extend(r.records.into_iter().map(Output::Record));
        if r.is_unsubscribe {
            return;
        }
        if r.success {
            self.mark_subscribed(out);
        } else {
            self.conn.subscribe_deadline = None;
            out.push(Output::Warning(
                "navixy: the server refused the subscription (see subscribe_error in session_events)"
                    .into(),
            ));
            self.retry_refused_subscribe("navixy refused every requested event type", out);
        }
    }

    fn on_error(&mut self, ctx: &Ctx, raw: &str, v: &Value, out: &mut Vec<Output>) {
        self.keep_whole(ctx, "error", &self.redact(raw), out);
        let e = subscribe::read_error(v);
        let detail = self.redact(&e.detail);
        out.push(Output::Record(session_event(
            ctx,
            "subscribe_error",
            e.code,
            Some(e.description.clone()),
            Some(detail),
        )));
        self.conn.subscribe_deadline = None;
        let code = e
            .code
            .map_or_else(|| "without code".into(), |c| c.to_string());
        let reason = format!("navixy error {code}: {}", e.description);
        if e.credential_dead() {
            out.push(Output::CredentialDead { reason });
        } else {
            out.push(Output::Warning(reason.clone()));
            self.retry_refused_subscribe(&reason, out);
        }
    }

    /// A refusal that arrives while this connection's subscribe is still unconfirmed
    /// leaves the socket open with nothing subscribed: blind for as long as the
    /// server keeps it. Queue errors (8) and rate limits (15) pass, so the session
    /// reconnects and subscribes again, with the runner's backoff (capped) spacing
    /// the attempts when the refusal persists. After a confirmed subscription an
    /// error frame says nothing about it and is only recorded.
    fn retry_refused_subscribe(&self, reason: &str, out: &mut Vec<Output>) {
        if self.conn.subscribe_sent && !self.conn.subscribed {
            out.push(Output::Reconnect {
                reason: format!("{reason}; subscribing again after a backoff"),
            });
        }
    }

    fn on_event(&mut self, ctx: &Ctx, raw: &str, mut v: Value, out: &mut Vec<Output>) {
        let name = v
            .get("event")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        match name.as_str() {
            "state" | "state_batch" | "readings_batch" => {
                // A repeated key reaches `v` once (the last value wins): the
                // envelope would hide the others, so the message is kept whole.
                let duplicate = fast::duplicate_key(raw);
                let data = v.as_object_mut().and_then(|o| o.remove("data"));
                let items = decode::items(ctx, self.opts.timezone, data.as_ref());
                if items.problems.is_empty() && duplicate.is_none() {
                    self.keep_typed(ctx, &name, raw, || v.to_string(), items.item_count, out);
                } else {
                    self.keep_whole(ctx, &name, raw, out);
                    if let Some(key) = duplicate {
                        let key: String = key.chars().take(40).collect();
                        self.warn_once(
                            format!("duplicate:{name}"),
                            || {
                                format!(
                                    "navixy: {name} holds the top-level key `{key}` more than \
                                     once: message kept whole in events, typed rows from the \
                                     last `{key}` as JSON readers take it (warned once)"
                                )
                            },
                            out,
                        );
                    }
                    for p in &items.problems {
                        self.warn_once(
                            format!("problem:{p}"),
                            || {
                                format!(
                                    "navixy: {name} {p}: message kept whole in events (warned once)"
                                )
                            },
                            out,
                        );
                    }
                }
                out.extend(items.records.into_iter().map(Output::Record));
                self.mark_subscribed(out);
            }
            "iot_monitor" => {
                self.keep_whole(ctx, &name, raw, out);
                self.mark_subscribed(out);
            }
            "lifecycle" => {
                self.keep_whole(ctx, &name, raw, out);
                match decode::lifecycle(ctx, v.get("data")) {
                    Ok(row) => {
                        out.push(Output::Record(crate::record::Record::TrackerLifecycle(row)))
                    }
                    Err(p) => self.warn_once(
                        format!("problem:{p}"),
                        || format!("navixy: {p}: kept raw in events (warned once)"),
                        out,
                    ),
                }
                self.mark_subscribed(out);
            }
            "logout" => {
                self.keep_whole(ctx, &name, raw, out);
                let said = match v.get("data") {
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => "no reason given".into(),
                };
                let said = self.redact(&said);
                out.push(Output::Record(session_event(
                    ctx,
                    "notification",
                    None,
                    Some(format!("logout: {said}")),
                    None,
                )));
                out.push(Output::CredentialDead {
                    reason: format!("navixy logout: {said}; the hash is no longer valid"),
                });
            }
            _ => {
                let kind = if name.is_empty() {
                    "event"
                } else {
                    name.as_str()
                };
                self.keep_whole(ctx, kind, raw, out);
                self.warn_once(
                    format!("event:{name}"),
                    || format!("navixy: unknown event `{name}`, kept raw in events (warned once)"),
                    out,
                );
            }
        }
    }
}
