//! The TOML files an operator writes: the config file and the rules file.

use std::path::Path;

use crate::rules::RuleSet;

/// The config file (UTF-8; other bytes are skipped): no panic; an accepted file written
/// back as TOML parses to the same config; a refusal names a key and the line.
pub fn config_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.toml");
    match crate::config::parse(path, text) {
        Ok(config) => {
            // Compared by their debug text, so a `nan` equals itself.
            if let Ok(written) = toml::to_string(&config) {
                let again = crate::config::parse(path, &written)
                    .unwrap_or_else(|e| panic!("a written config does not parse: {e}"));
                assert_eq!(format!("{again:?}"), format!("{config:?}"));
            }
        }
        Err(e) => assert!(!e.key.is_empty() && e.message.contains("(line ")),
    }
}

/// The rules file (UTF-8; other bytes are skipped): no panic while it is parsed and
/// compiled; an accepted file's rule names are unique.
pub fn rules_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(set) = RuleSet::parse(Path::new("fuzz-rules.toml"), text) {
        let mut names = std::collections::HashSet::new();
        for r in &set.rules {
            assert!(names.insert(r.name.clone()), "rule {:?} twice", r.name);
        }
    }
}
