//! Process limits a proxy needs raised.

/// Raises this process's soft limit on open files to its hard limit, as nginx
/// (`worker_rlimit_nofile`) and HAProxy do: each proxied connection holds two descriptors
/// (client and app), and the usual soft limit of 1024 would refuse clients after about 500
/// concurrent connections. Returns the soft limit now in force (`None` if unlimited or
/// unknown). Never lowers a limit; on platforms without such limits it does nothing.
pub fn raise_open_files_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        let now = getrlimit(Resource::Nofile);
        let current = now.current?;
        // An unlimited hard limit is not accepted as a soft one everywhere (macOS caps open
        // files per process): try it, then a large finite value.
        let targets = [now.maximum, Some(1 << 20)];
        for target in targets {
            let want = target.unwrap_or(u64::MAX);
            if want <= current {
                return Some(current);
            }
            let new = Rlimit {
                current: target,
                maximum: now.maximum,
            };
            if setrlimit(Resource::Nofile, new).is_ok() {
                return target;
            }
        }
        Some(current)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(unix)]
    fn the_soft_open_files_limit_is_raised_to_the_hard_one() {
        use rustix::process::{getrlimit, Resource};
        let before = getrlimit(Resource::Nofile);
        let now = super::raise_open_files_limit();
        let after = getrlimit(Resource::Nofile);
        assert_eq!(now, after.current);
        assert_eq!(after.maximum, before.maximum, "the hard limit is unchanged");
        assert!(after.current >= before.current, "never lowered");
        if let (Some(hard), Some(soft)) = (after.maximum, after.current) {
            assert!(soft == hard || soft == 1 << 20, "raised: {soft} of {hard}");
        }
    }
}
