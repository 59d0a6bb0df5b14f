//! Parsers never panic and accept exactly what their rule says.

use paas_core::*;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn app_names_never_panic(s in "\\PC{0,40}") {
        let ok = AppName::new(s.clone()).is_ok();
        let re = s.len() <= 30
            && s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !s.ends_with('-');
        prop_assert_eq!(ok, re);
    }

    #[test]
    fn app_name_like_strings(s in "[a-z0-9-]{0,32}") {
        let _ = AppName::new(s);
    }

    #[test]
    fn config_keys_follow_the_rule(s in "\\PC{0,20}|[A-Za-z0-9_]{0,20}") {
        let ok = ConfigKey::new(s.clone()).is_ok();
        let re = !s.is_empty()
            && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        prop_assert_eq!(ok, re);
    }

    #[test]
    fn procfiles_never_panic_and_round_trip(s in "(\\PC{0,30}(:\\PC{0,30})?\n){0,8}") {
        if let Ok(p) = Procfile::parse(&s) {
            prop_assert_eq!(Procfile::parse(&p.render()).unwrap(), p);
        }
    }

    #[test]
    fn structured_procfiles_parse(entries in proptest::collection::btree_map("[a-zA-Z0-9_-]{1,10}", "[a-z$ ./-]{0,20}[a-z]", 0..6)) {
        let text: String = entries.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
        let p = Procfile::parse(&text).unwrap();
        for (k, v) in &entries {
            prop_assert_eq!(p.command(&ProcessType::new(k.clone()).unwrap()), Some(v.trim()));
        }
    }

    #[test]
    fn other_parsers_never_panic(s in "\\PC{0,40}") {
        let _ = s.parse::<Version>();
        let _ = Domain::new(s.clone());
        let _ = check_ref_name(&s);
        let _ = check_relative_path(&s);
        let _ = s.parse::<LogSource>();
        let _ = ConfigUpdate::parse_pairs([s.as_str()]);
        let _ = Formation::parse_pairs([s.as_str()]);
    }
}
