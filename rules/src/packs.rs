//! The shipped rule packs, compiled into the binary so `feedloop scan` works from any folder.

use std::path::Path;

use crate::load::{LoadErrors, RuleSet};

/// Every shipped pack file: its path inside the repository and its text.
pub const PACK_FILES: &[(&str, &str)] = &[
    ("rules/packs/auth.yaml", include_str!("../packs/auth.yaml")),
    (
        "rules/packs/recon.yaml",
        include_str!("../packs/recon.yaml"),
    ),
    (
        "rules/packs/injection.yaml",
        include_str!("../packs/injection.yaml"),
    ),
    (
        "rules/packs/errors.yaml",
        include_str!("../packs/errors.yaml"),
    ),
];

/// Loads the shipped packs.
pub fn shipped() -> Result<RuleSet, LoadErrors> {
    let mut errors = Vec::new();
    let mut set = RuleSet::default();
    for (path, pack) in PACK_FILES {
        match RuleSet::from_text(Path::new(path), pack) {
            Ok(loaded) => set.extend(loaded, &mut errors),
            Err(LoadErrors(mut e)) => errors.append(&mut e),
        }
    }
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(LoadErrors(errors))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn shipped_packs_load() {
        let set = super::shipped().unwrap();
        assert!(set.len() >= 10, "{} rules", set.len());
    }
}
