//! Listing by directory (`list.by_directory`): ListObjectsV2 with `delimiter=/`, descending only
//! into the directories the include globs can match below, so that a bucket with millions of
//! keys under the prefix (every symbol, every interval, every day) is listed only where the
//! globs look. In this mode each `*` of a glob matches within one path segment.

use globset::{Glob, GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};

/// The include globs, per path segment for pruning and whole for selecting.
pub struct Walker {
    /// Per glob: its segments' matchers, or `None` when the glob cannot prune (a `**`, or `{}`
    /// alternatives that may hold a `/`).
    globs: Vec<Option<Vec<GlobMatcher>>>,
    /// The globs with `*` kept within one segment.
    whole: GlobSet,
}

impl Walker {
    pub fn new(include: &[String]) -> Result<Self, String> {
        let mut globs = Vec::new();
        let mut whole = GlobSetBuilder::new();
        for pattern in include {
            let g = GlobBuilder::new(pattern)
                .literal_separator(true)
                .build()
                .map_err(|e| format!("bad glob `{pattern}`: {e}"))?;
            whole.add(g);
            if pattern.contains("**") || pattern.contains('{') {
                globs.push(None);
                continue;
            }
            let segments = pattern
                .split('/')
                .map(|seg| {
                    Glob::new(seg).map(|g| g.compile_matcher()).map_err(|e| format!("bad glob `{pattern}`: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            globs.push(Some(segments));
        }
        Ok(Walker { globs, whole: whole.build().map_err(|e| e.to_string())? })
    }

    /// Whether a key below the directory `rel` (relative to the prefix's directory, ending in
    /// `/`) can match a glob.
    pub fn may_contain(&self, rel: &str) -> bool {
        let dirs: Vec<&str> = rel.trim_end_matches('/').split('/').collect();
        self.globs.iter().any(|g| match g {
            None => true,
            Some(segments) => segments.len() > dirs.len() && dirs.iter().zip(segments).all(|(d, s)| s.is_match(d)),
        })
    }

    /// Whether `locator` matches a glob with `*` within one segment.
    pub fn selects(&self, locator: &str) -> bool {
        self.whole.is_match(locator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_directories_a_glob_can_reach_are_walked() {
        let w = Walker::new(&["*/1s/*.zip".to_string()]).unwrap();
        assert!(w.may_contain("BTCUSDT/"));
        assert!(w.may_contain("BTCUSDT/1s/"));
        assert!(!w.may_contain("BTCUSDT/1m/"));
        assert!(!w.may_contain("BTCUSDT/1s/deeper/"), "a file below must be one segment down");
        assert!(w.selects("BTCUSDT/1s/BTCUSDT-1s-2024-01-01.zip"));
        assert!(!w.selects("BTCUSDT/x/1s/a.zip"), "`*` stays within a segment");
        let any = Walker::new(&["**/*.zip".to_string(), "a/*.csv".to_string()]).unwrap();
        assert!(any.may_contain("z/y/"), "`**` walks everything");
        let two = Walker::new(&["BTC*/1s/*.zip".to_string(), "ETHUSDT/1m/*.zip".to_string()]).unwrap();
        assert!(two.may_contain("BTCUSDT/") && two.may_contain("ETHUSDT/1m/"));
        assert!(!two.may_contain("ETHUSDT/1s/") && !two.may_contain("SOLUSDT/"));
    }
}
