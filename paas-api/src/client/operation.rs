//! [`Operation`]: a long operation's progress as a stream, ending with its result.

use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use paas_core::{Error, ErrorKind, OutputStream, Result};
use serde::de::DeserializeOwned;

use crate::wire::StreamEvent;

/// One step of an [`Operation`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Update<T> {
    /// A progress line for the user (build output, rollout steps).
    Progress(String),
    /// Output of a one-off command.
    Output {
        /// Which stream.
        stream: OutputStream,
        /// The text, as produced (may hold partial lines).
        text: String,
    },
    /// The operation finished with this result; the stream ends after it.
    Done(T),
}

/// A long operation (deploy, config change, scale, rollback, restart, one-off run) as a stream
/// of [`Update`]s: progress as it happens, then exactly one `Done`, or an `Err` (the
/// operation's error, with its kind, or a broken connection as `Unavailable`). Nothing follows
/// `Done` or an error.
///
/// Event kinds this version does not know (a newer server's) are skipped.
#[must_use = "an operation does nothing useful unless its stream is read"]
pub struct Operation<T> {
    events: BoxStream<'static, Result<String>>,
    finished: bool,
    base: String,
    decode: fn(StreamEvent) -> Option<Result<Update<T>>>,
    _result: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Operation<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operation")
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl<T: DeserializeOwned + Send + 'static> Operation<T> {
    /// An operation whose `result` event carries a `T`.
    pub(crate) fn result(events: BoxStream<'static, Result<String>>, base: &str) -> Self {
        Operation {
            events,
            finished: false,
            base: base.to_string(),
            decode: |ev| match ev {
                StreamEvent::Result { value } => Some(
                    serde_json::from_value(value)
                        .map(Update::Done)
                        .map_err(|e| {
                            Error::internal(format!("the server sent an unexpected result: {e}"))
                        }),
                ),
                StreamEvent::Exit { code } => Some(Err(Error::internal(format!(
                    "the server ended the operation with an exit event (code {code})"
                )))),
                _ => None,
            },
            _result: PhantomData,
        }
    }
}

impl Operation<i32> {
    /// A one-off run: `output` events, then its `exit` code.
    pub(crate) fn exit_code(events: BoxStream<'static, Result<String>>, base: &str) -> Self {
        Operation {
            events,
            finished: false,
            base: base.to_string(),
            decode: |ev| match ev {
                StreamEvent::Exit { code } => Some(Ok(Update::Done(code))),
                StreamEvent::Result { value } => Some(Ok(Update::Done(
                    value.get("code").and_then(|c| c.as_i64()).unwrap_or(0) as i32,
                ))),
                _ => None,
            },
            _result: PhantomData,
        }
    }
}

impl<T> Operation<T> {
    /// Waits for the result, passing each progress line and output chunk to `on_update`.
    pub async fn finish(mut self, mut on_update: impl FnMut(Update<T>)) -> Result<T>
    where
        T: Unpin,
    {
        while let Some(update) = self.next().await {
            match update? {
                Update::Done(v) => return Ok(v),
                other => on_update(other),
            }
        }
        Err(self.ended_early())
    }

    /// Waits for the result, ignoring progress.
    pub async fn wait(self) -> Result<T>
    where
        T: Unpin,
    {
        self.finish(|_| {}).await
    }

    fn ended_early(&self) -> Error {
        Error::new(
            ErrorKind::Unavailable,
            format!(
                "the connection to {} ended before the operation finished (the server may have restarted)",
                self.base
            ),
        )
    }
}

impl<T: Unpin> Stream for Operation<T> {
    type Item = Result<Update<T>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.finished {
                return Poll::Ready(None);
            }
            let line = match this.events.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    this.finished = true;
                    return Poll::Ready(Some(Err(this.ended_early())));
                }
                Poll::Ready(Some(Err(e))) => {
                    this.finished = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(line))) => line,
            };
            let event: StreamEvent = match serde_json::from_str(&line) {
                Ok(ev) => ev,
                // A line that is not an event at all: shown as progress rather than lost.
                Err(_) => return Poll::Ready(Some(Ok(Update::Progress(line)))),
            };
            let update = match event {
                StreamEvent::Progress { line } => Ok(Update::Progress(line)),
                StreamEvent::Output { stream, text } => Ok(Update::Output { stream, text }),
                StreamEvent::Error { error } => Err(Error::from(error)),
                StreamEvent::Unknown => continue,
                other => match (this.decode)(other) {
                    Some(u) => u,
                    None => continue,
                },
            };
            if matches!(update, Ok(Update::Done(_)) | Err(_)) {
                this.finished = true;
            }
            return Poll::Ready(Some(update));
        }
    }
}
