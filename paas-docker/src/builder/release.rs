//! Parsing of a buildpack's `bin/release` output.

use paas_core::{Error, ProcessType, Procfile, Result};

/// Parses the `default_process_types` mapping of a `bin/release` YAML document (the subset
/// classic buildpacks print: a block mapping of `type: command` scalars, plain or quoted, or
/// `{}`). Other keys (`addons`, `config_vars`) are ignored.
pub(crate) fn parse_release_yaml(text: &str) -> Result<Procfile> {
    let mut entries = Vec::new();
    let mut in_block = false;
    let mut block_indent = None;
    for raw in text.lines() {
        let line = raw.trim_end();
        if line.trim().is_empty() || line.trim_start().starts_with('#') || line.trim() == "---" {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        if indent == 0 {
            in_block = false;
            if let Some(rest) = line.strip_prefix("default_process_types:") {
                let rest = rest.trim();
                if rest.is_empty() {
                    in_block = true;
                    block_indent = None;
                } else if rest != "{}" && rest != "~" && rest != "null" {
                    return Err(Error::invalid(
                        "default_process_types must be a block mapping of type: command",
                    ));
                }
            }
            continue;
        }
        if !in_block {
            continue;
        }
        match block_indent {
            None => block_indent = Some(indent),
            Some(i) if i != indent => continue,
            _ => {}
        }
        let Some((key, value)) = line.trim().split_once(':') else {
            return Err(Error::invalid(format!(
                "default_process_types: expected \"type: command\", got \"{}\"",
                line.trim().escape_debug()
            )));
        };
        let key = unquote(key.trim());
        let ty = ProcessType::new(key)?;
        let value = unquote(value.trim());
        if !value.is_empty() {
            entries.push((ty, value));
        }
    }
    Procfile::from_entries(entries)
}

fn unquote(s: &str) -> String {
    if s.len() >= 2 && s.starts_with('\'') && s.ends_with('\'') {
        s[1..s.len() - 1].replace("''", "'")
    } else if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
        let inner = &s[1..s.len() - 1];
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some('n') => out.push(' '),
                    Some('t') => out.push('\t'),
                    Some(o) => out.push(o),
                    None => {}
                }
            } else {
                out.push(c);
            }
        }
        out
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_yaml() {
        let p = parse_release_yaml(
            "---\naddons: []\nconfig_vars:\n  FOO: bar\ndefault_process_types:\n  web: 'httpd -f -p $PORT'\n  worker: \"sh -c \\\"x\\\"\"\n  clock: run clock\n",
        )
        .unwrap();
        assert_eq!(p.command(&ProcessType::web()), Some("httpd -f -p $PORT"));
        assert_eq!(
            p.command(&ProcessType::new("worker").unwrap()),
            Some("sh -c \"x\"")
        );
        assert_eq!(
            p.command(&ProcessType::new("clock").unwrap()),
            Some("run clock")
        );
        assert!(parse_release_yaml("default_process_types: {}\n")
            .unwrap()
            .is_empty());
        assert!(parse_release_yaml("--- {}\n").unwrap().is_empty());
        assert!(parse_release_yaml("default_process_types:\n  bad type: x\n").is_err());
    }
}
