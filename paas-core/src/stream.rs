//! Small stream helpers shared by backends.

use futures::StreamExt;
use tokio::sync::broadcast;

/// Turns a broadcast receiver into a stream of its values. A receiver that lags behind skips
/// the values it missed (a slow subscriber never slows the sender); the stream ends when the
/// sender is dropped.
pub fn broadcast_stream<T: Clone + Send + 'static>(
    rx: broadcast::Receiver<T>,
) -> BoxStream<'static, T> {
    futures::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(v) => return Some((v, rx)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .boxed()
}

/// The boxed stream type every streaming method of the traits returns.
pub use futures::stream::BoxStream;
