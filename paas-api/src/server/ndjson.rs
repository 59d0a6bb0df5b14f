//! NDJSON answers: long operations run in their own task (they finish even when the client goes
//! away) and stream [`StreamEvent`] lines, with a bounded buffer towards a slow client.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use axum::body::Body;
use axum::http::header;
use axum::response::Response;
use futures::{Stream, StreamExt};
use paas_core::{Progress, Result};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::wire::StreamEvent;

/// Progress lines buffered for a client that reads slowly; past this, lines are dropped and a
/// note says how many.
const PROGRESS_BUFFER: usize = 4096;

/// The media type of streamed answers.
pub const NDJSON: &str = "application/x-ndjson";

/// An answer whose body is one JSON document per line.
pub fn ndjson<S, T>(items: S) -> Response
where
    S: Stream<Item = T> + Send + 'static,
    T: Serialize,
{
    let body = Body::from_stream(items.map(|item| {
        let mut line = serde_json::to_string(&item).unwrap_or_else(|_| {
            r#"{"type":"error","error":{"kind":"internal","message":"unserializable event"}}"#
                .into()
        });
        line.push('\n');
        Ok::<_, Infallible>(line)
    }));
    Response::builder()
        .header(header::CONTENT_TYPE, NDJSON)
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body)
        .expect("static headers are valid")
}

/// Runs `op` in its own task and answers its progress lines, then its result (serialized) or
/// its error, as NDJSON.
pub fn stream_op<F, Fut, T>(op: F) -> Response
where
    F: FnOnce(Progress) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T>> + Send + 'static,
    T: Serialize + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<StreamEvent>(PROGRESS_BUFFER);
    let (progress, mut lines) = Progress::channel();
    tokio::spawn(async move {
        let fwd_tx = tx.clone();
        let forward = tokio::spawn(async move {
            let mut dropped = 0u64;
            while let Some(line) = lines.recv().await {
                if fwd_tx.try_send(StreamEvent::Progress { line }).is_err() {
                    dropped += 1;
                }
            }
            dropped
        });
        let result = op(progress).await;
        let dropped = tokio::time::timeout(Duration::from_secs(2), forward)
            .await
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or(0);
        if dropped > 0 {
            let line =
                format!("({dropped} progress lines were dropped: the client read too slowly)");
            let _ = tx.send(StreamEvent::Progress { line }).await;
        }
        let last = match result.and_then(|v| {
            serde_json::to_value(v).map_err(|e| {
                paas_core::Error::internal(format!("the result could not be serialized: {e}"))
            })
        }) {
            Ok(value) => StreamEvent::Result { value },
            Err(e) => StreamEvent::Error { error: (&e).into() },
        };
        let _ = tx.send(last).await;
    });
    ndjson(receiver_stream(rx))
}

/// A bounded receiver as a stream.
pub fn receiver_stream<T: Send + 'static>(rx: mpsc::Receiver<T>) -> impl Stream<Item = T> {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
}
