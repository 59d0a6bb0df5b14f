//! The extension-point examples run and do what their docs say (no Docker needed).

mod support;

use std::process::Command;

fn run_example(name: &str) -> String {
    let out = Command::new(support::example_binary(name))
        .output()
        .unwrap_or_else(|e| panic!("run example {name}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "example {name} failed ({:?}):\n{stdout}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn memory_platform_deploys_scales_and_rolls_back() {
    let out = run_example("memory_platform");
    assert!(
        out.contains("deployed v1 at http://hello.apps.example.com"),
        "{out}"
    );
    assert!(out.contains("rollback to v1 made v3"), "{out}");
    assert_eq!(
        out.matches(" up v3").count(),
        3,
        "three web processes of v3: {out}"
    );
}

#[test]
fn embed_api_mounts_the_api_with_its_own_authorizer() {
    let out = run_example("embed_api");
    assert!(out.contains("/paas/billing.git"), "{out}");
    assert!(out.contains("reader may not change config"), "{out}");
}

#[test]
fn custom_backend_passes_the_testkit() {
    let out = run_example("custom_backend");
    assert!(
        out.contains("passes paas-core's LogSink conformance suite"),
        "{out}"
    );
    assert!(out.contains("Created app ring"), "{out}");
}
