//! Reference-name rules shared by the store and the HTTP service.
//!
//! The rules are git's `check-ref-format` rules plus ours: no leading `-` (so a name can never be
//! taken for an option), no control characters, and at most 255 bytes.

/// The longest reference name accepted, in bytes.
const MAX_LEN: usize = 255;

/// Checks one reference-like string (`main`, `refs/heads/main`, `HEAD`, a hex commit id) against
/// the syntax rules. Returns the broken rule.
pub(crate) fn check_syntax(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("a reference must not be empty");
    }
    if s.len() > MAX_LEN {
        return Err("a reference must be at most 255 bytes");
    }
    if s.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err("a reference must not contain control characters");
    }
    if s.contains("..") {
        return Err("a reference must not contain \"..\"");
    }
    if s.starts_with('-') {
        return Err("a reference must not start with '-'");
    }
    if s.bytes()
        .any(|b| matches!(b, b' ' | b'~' | b'^' | b':' | b'?' | b'*' | b'[' | b'\\'))
    {
        return Err("a reference must not contain spaces or any of ~ ^ : ? * [ \\");
    }
    if s.contains("@{") || s == "@" {
        return Err("a reference must not contain \"@{\" or be \"@\"");
    }
    if s.starts_with('/') || s.ends_with('/') || s.contains("//") {
        return Err("a reference must not start or end with '/' or contain \"//\"");
    }
    if s.ends_with('.') {
        return Err("a reference must not end with '.'");
    }
    for component in s.split('/') {
        if component.starts_with('.') {
            return Err("no component of a reference may start with '.'");
        }
        if component.starts_with('-') {
            return Err("no component of a reference may start with '-'");
        }
        if component.ends_with(".lock") {
            return Err("no component of a reference may end with \".lock\"");
        }
    }
    Ok(())
}

/// Checks a full reference name that a client wants to update (`refs/heads/<branch>`). Returns
/// the reason to show the client when it is refused.
pub(crate) fn check_push_ref(full: &str) -> Result<(), String> {
    let Some(branch) = full.strip_prefix("refs/heads/") else {
        return Err("only branches (refs/heads/*) may be pushed".to_string());
    };
    check_branch(branch)
}

/// Checks a short branch name (`main`, `feature/x`). Returns the broken rule.
pub(crate) fn check_branch(branch: &str) -> Result<(), String> {
    if branch.is_empty() {
        return Err("invalid branch name: it must not be empty".to_string());
    }
    if branch == "HEAD" {
        return Err("invalid branch name: \"HEAD\" is reserved".to_string());
    }
    if branch.starts_with("refs/") {
        return Err(
            "invalid branch name: give the short name (main), not a full reference (refs/...)"
                .to_string(),
        );
    }
    check_syntax(branch).map_err(|rule| format!("invalid branch name: {rule}"))?;
    if !git2::Reference::is_valid_name(&format!("refs/heads/{branch}")) {
        return Err("invalid branch name: rejected by git's ref-name rules".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax() {
        for ok in [
            "main",
            "refs/heads/main",
            "HEAD",
            "feature/x-1",
            "abc123",
            "v1.2",
        ] {
            check_syntax(ok).unwrap();
        }
        for bad in [
            "",
            "a..b",
            "-x",
            "a\nb",
            "a\u{7f}",
            "a b",
            "a~1",
            "a^",
            "a:b",
            "a?",
            "a*",
            "a[",
            "a\\b",
            "a@{1}",
            "@",
            "/a",
            "a/",
            "a//b",
            "a.",
            "a/.b",
            "a/-b",
            "a.lock",
            "a/b.lock/c",
        ] {
            assert!(check_syntax(bad).is_err(), "{bad:?}");
        }
        assert!(check_syntax(&"a".repeat(256)).is_err());
    }

    #[test]
    fn push_refs() {
        check_push_ref("refs/heads/main").unwrap();
        check_push_ref("refs/heads/feature/a").unwrap();
        let e = check_push_ref("refs/tags/v1").unwrap_err();
        assert!(e.contains("refs/heads/*"));
        assert!(check_push_ref("refs/foo").is_err());
        assert!(check_push_ref("refs/heads/").is_err());
        assert!(check_push_ref("refs/heads/HEAD").is_err());
        assert!(check_push_ref("refs/heads/-rf").is_err());
        assert!(check_push_ref("refs/heads/a..b").is_err());
        assert!(check_push_ref("refs/heads/a\u{1}").is_err());
    }
}
