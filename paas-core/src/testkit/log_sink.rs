//! Conformance suite for [`LogSink`].

use std::time::Duration;

use futures::StreamExt;

use crate::model::{LogLine, LogSource, ProcessType};
use crate::traits::LogSink;

use super::unique_app;

/// Runs every LogSink contract.
pub async fn run_all(sink: &dyn LogSink) {
    tail_keeps_order(sink).await;
    follow_streams_new_lines(sink).await;
    apps_are_separate(sink).await;
}

/// tail returns the last N lines, oldest first.
pub async fn tail_keeps_order(sink: &dyn LogSink) {
    let app = unique_app("logs-tail");
    assert!(
        sink.tail(&app, 10).await.unwrap().is_empty(),
        "unknown app has no lines"
    );
    for i in 0..20 {
        sink.append(LogLine::new(
            app.clone(),
            LogSource::Router,
            format!("line {i}"),
        ))
        .await
        .unwrap();
    }
    let tail = sink.tail(&app, 5).await.unwrap();
    let texts: Vec<_> = tail.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(
        texts,
        ["line 15", "line 16", "line 17", "line 18", "line 19"],
        "tail order"
    );
    assert_eq!(
        sink.tail(&app, 100).await.unwrap().len(),
        20,
        "tail caps at what exists"
    );
    sink.remove_app(&app).await.unwrap();
    assert!(
        sink.tail(&app, 10).await.unwrap().is_empty(),
        "remove_app forgets lines"
    );
    sink.remove_app(&app).await.expect("remove_app idempotent");
}

/// follow sees lines appended after it started, in order, and not older ones.
pub async fn follow_streams_new_lines(sink: &dyn LogSink) {
    let app = unique_app("logs-follow");
    sink.append(LogLine::new(app.clone(), LogSource::Router, "old"))
        .await
        .unwrap();
    let mut stream = sink.follow(&app).await.unwrap();
    let src = LogSource::App {
        process_type: ProcessType::web(),
        index: 1,
    };
    for i in 0..3 {
        sink.append(LogLine::new(app.clone(), src.clone(), format!("new {i}")))
            .await
            .unwrap();
    }
    for i in 0..3 {
        let line = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("follow delivers within 5s")
            .expect("stream open");
        assert_eq!(line.text, format!("new {i}"), "follow order");
        assert_eq!(line.source, src, "source kept");
    }
    sink.remove_app(&app).await.unwrap();
}

/// Lines of one app never show up for another.
pub async fn apps_are_separate(sink: &dyn LogSink) {
    let a = unique_app("logs-a");
    let b = unique_app("logs-b");
    sink.append(LogLine::new(a.clone(), LogSource::Router, "for a"))
        .await
        .unwrap();
    assert!(
        sink.tail(&b, 10).await.unwrap().is_empty(),
        "app b sees no line of app a"
    );
    sink.remove_app(&a).await.unwrap();
}
