//! Triggers: filesystem events through `notify` (inotify on Linux), or polling where events do
//! not work, chosen per source by `watch.mode`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use notify::event::{AccessKind, AccessMode, EventKind};
use std::sync::atomic::{AtomicBool, Ordering};

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use sluice_core::source::Source;
use sluice_core::spec::WatchMode;
use tokio::sync::Notify;

use crate::WatchError;

/// Filesystem types whose changes do not all reach local inotify: network and FUSE mounts.
const NO_EVENTS: &[&str] =
    &["nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "9p", "ceph", "glusterfs", "lustre", "gpfs", "davfs"];

/// Undo the octal escapes of `/proc/self/mountinfo` (`\040` is a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).is_some_and(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        if b[i] == b'\\' && octal {
            let d = &b[i + 1..i + 4];
            out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The filesystem type of the mount holding `path`, from a `mountinfo` text.
fn fs_type_in(mountinfo: &str, path: &Path) -> Option<String> {
    let mut best: Option<(usize, String)> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else { continue };
        let (Some(mount), Some(fstype)) = (fields.get(4), fields.get(sep + 1)) else { continue };
        let mount = PathBuf::from(unescape(mount));
        if path.starts_with(&mount) {
            let depth = mount.components().count();
            if best.as_ref().is_none_or(|(d, _)| depth >= *d) {
                best = Some((depth, fstype.to_string()));
            }
        }
    }
    best.map(|(_, t)| t)
}

/// The filesystem type of `path` when it is one without reliable events (network, FUSE), from
/// `/proc/self/mountinfo`; `None` for local filesystems and where that file does not exist.
pub fn network_filesystem(path: &Path) -> Option<String> {
    let path = path.canonicalize().ok()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let t = fs_type_in(&info, &path)?;
    (NO_EVENTS.contains(&t.as_str()) || t == "fuse" || t.starts_with("fuse.")).then_some(t)
}

/// Whether an event may change a listing: creations, writes, renames, removals and overflows;
/// not opens and reads (Sluice reading its own input must not trigger another scan).
fn relevant_kind(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Relevant changes since the last scan: set from the event thread, taken by the watch loop.
#[derive(Default)]
pub(crate) struct Wake {
    dirty: AtomicBool,
    notify: Notify,
}

impl Wake {
    pub(crate) fn signal(&self) {
        self.dirty.store(true, Ordering::SeqCst);
        self.notify.notify_one();
    }

    /// Resolves after a `signal` (at once if one came since the last wait).
    pub(crate) async fn wait(&self) {
        self.notify.notified().await;
    }

    /// Whether anything changed since the last `take`; clears it.
    pub(crate) fn take(&self) -> bool {
        self.dirty.swap(false, Ordering::SeqCst)
    }
}

/// How a source is watched, once decided.
pub(crate) enum Trigger {
    /// Events wake the pipeline; dropping the watcher stops them.
    Events(#[allow(dead_code)] RecommendedWatcher),
    /// The pipeline lists the source every interval.
    Poll(std::time::Duration),
}

/// Start watching a source per its `watch` settings. Events call `wake` for relevant changes.
pub(crate) fn start(
    source: Arc<dyn Source>,
    spec: &sluice_core::spec::SourceSpec,
    wake: Arc<Wake>,
) -> Result<Trigger, WatchError> {
    let roots = source.watch_roots();
    let poll = Trigger::Poll(spec.watch.poll_interval);
    let name = source.name().to_string();
    if spec.watch.mode == WatchMode::Poll || roots.is_empty() {
        tracing::info!(source = %name, interval_ms = spec.watch.poll_interval.as_millis() as u64, "polling");
        return Ok(poll);
    }
    if spec.watch.mode == WatchMode::Auto
        && let Some(fs) = roots.iter().find_map(|r| network_filesystem(r))
    {
        tracing::info!(source = %name, filesystem = %fs,
            interval_ms = spec.watch.poll_interval.as_millis() as u64, "no filesystem events on this mount: polling");
        return Ok(poll);
    }
    match events(source.clone(), &roots, wake) {
        Ok(w) => {
            tracing::info!(source = %name, "watching for filesystem events");
            Ok(Trigger::Events(w))
        }
        Err((path, e)) if spec.watch.mode == WatchMode::Auto => {
            tracing::warn!(source = %name, path = %path.display(),
                "filesystem events unavailable ({e}): polling every {:?}", spec.watch.poll_interval);
            Ok(poll)
        }
        Err((path, e)) => Err(WatchError::Events { path: path.display().to_string(), message: e.to_string() }),
    }
}

fn events(
    source: Arc<dyn Source>,
    roots: &[PathBuf],
    wake: Arc<Wake>,
) -> Result<RecommendedWatcher, (PathBuf, notify::Error)> {
    let filter = source.clone();
    let handler = move |res: notify::Result<notify::Event>| match res {
        Ok(ev) => {
            tracing::trace!(kind = ?ev.kind, paths = ?ev.paths, "filesystem event");
            let rescan = ev.need_rescan() || ev.paths.is_empty();
            if rescan || (relevant_kind(&ev.kind) && ev.paths.iter().any(|p| filter.affects(p))) {
                wake.signal();
            }
        }
        Err(e) => {
            // Lost events (e.g. an overflowing queue): a full scan catches up.
            tracing::warn!(source = %filter.name(), "filesystem events: {e}");
            wake.signal();
        }
    };
    let first = roots.first().cloned().unwrap_or_default();
    let mut w = notify::recommended_watcher(handler).map_err(|e| (first, e))?;
    for r in roots {
        w.watch(r, RecursiveMode::Recursive).map_err(|e| (r.clone(), e))?;
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:35 / /mnt/share rw,relatime shared:20 - nfs4 srv:/export rw,vers=4.2
41 40 0:36 / /mnt/share/local rw,relatime shared:21 - tmpfs tmpfs rw
42 22 0:37 / /mnt/my\\040drive rw,relatime shared:22 - fuse.sshfs host:/ rw
";

    #[test]
    fn the_deepest_mount_decides_the_filesystem() {
        assert_eq!(fs_type_in(MOUNTINFO, Path::new("/home/x/in")).as_deref(), Some("ext4"));
        assert_eq!(fs_type_in(MOUNTINFO, Path::new("/mnt/share/in")).as_deref(), Some("nfs4"));
        assert_eq!(fs_type_in(MOUNTINFO, Path::new("/mnt/share/local/in")).as_deref(), Some("tmpfs"));
        assert_eq!(fs_type_in(MOUNTINFO, Path::new("/mnt/my drive/in")).as_deref(), Some("fuse.sshfs"));
        // A sibling whose name only starts like a mount point is not under it.
        assert_eq!(fs_type_in(MOUNTINFO, Path::new("/mnt/shared")).as_deref(), Some("ext4"));
    }

    #[test]
    fn reads_do_not_trigger_scans() {
        assert!(!relevant_kind(&EventKind::Access(AccessKind::Open(AccessMode::Any))));
        assert!(!relevant_kind(&EventKind::Access(AccessKind::Close(AccessMode::Read))));
        assert!(relevant_kind(&EventKind::Access(AccessKind::Close(AccessMode::Write))));
        assert!(relevant_kind(&EventKind::Create(notify::event::CreateKind::File)));
    }
}
