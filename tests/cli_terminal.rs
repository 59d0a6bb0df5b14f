//! The CLI never lets app text drive the user's terminal: escape sequences and bidirectional
//! overrides in build output, errors and log lines are printed escaped (no Docker needed: a
//! stand-in server sends them).

mod support;

use std::process::Command;

use axum::response::IntoResponse;

const EVIL: &str = "\u{1b}]0;pwned\u{7}\u{1b}[2J\u{202e}gnp.exe";

fn line(ts: &str, text: &str) -> String {
    serde_json::json!({
        "timestamp": ts, "app": "evil", "source": "app[web.1]", "text": text
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_text_never_reaches_the_terminal_raw() {
    let ndjson = |body: String| ([("content-type", "application/x-ndjson")], body).into_response();
    let router = axum::Router::new()
        .route(
            "/v1/apps/{app}/deploys",
            axum::routing::post(move || async move {
                let progress = serde_json::json!({"type": "progress", "line": EVIL}).to_string();
                let error = serde_json::json!({"type": "error", "error": {"kind": "build_failed", "message": EVIL}}).to_string();
                ndjson(format!("{progress}\n{error}\n"))
            }),
        )
        .route(
            "/v1/apps/{app}/logs",
            axum::routing::get(move || async move {
                ndjson(format!("{}\n", line("2026-12-04T10:00:00.000Z", EVIL)))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });

    let run = move |args: &[&str]| {
        let out = Command::new(support::example_binary("paas"))
            .args(args)
            .env("PAAS_URL", &url)
            .env("PAAS_TOKEN", "t")
            .env_remove("PAAS_APP")
            .output()
            .unwrap();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let outputs = tokio::task::spawn_blocking(move || {
        vec![
            run(&["deploy", "-a", "evil"]),
            run(&["logs", "-a", "evil"]),
            run(&["--json", "logs", "-a", "evil"]),
        ]
    })
    .await
    .unwrap();
    for (stdout, stderr) in &outputs {
        for text in [stdout, stderr] {
            assert!(
                !text.contains('\u{1b}') && !text.contains('\u{7}') && !text.contains('\u{202e}'),
                "raw control characters reached the terminal: {text:?}"
            );
        }
    }
    // They are shown, escaped, not dropped.
    assert!(
        outputs[0].1.contains("\\u{001b}]0;pwned"),
        "{:?}",
        outputs[0]
    );
    assert!(
        outputs[1].0.contains("\\u{202e}gnp.exe"),
        "{:?}",
        outputs[1]
    );
    // --json stays JSON with the same text.
    let v: serde_json::Value = serde_json::from_str(outputs[2].0.trim()).unwrap();
    assert_eq!(v["text"], EVIL);
}
