//! Where a process's resident memory is, by kind of mapping, from `/proc/self/smaps`
//! (Linux): thread stacks, malloc's heaps, other anonymous memory, and files (code and
//! libraries). The fan-out benchmark prints the change of each per connected DP.
//!
//! Included with `#[path = "common/rss.rs"] mod rss;` by examples/fanout.rs.

/// Resident KiB of this process by kind of mapping.
#[derive(Debug, Default, Clone, Copy)]
pub struct Rss {
    /// Thread stacks: writable anonymous mappings of 32 KiB or more right above a guard
    /// page (the glibc thread descriptor and static TLS are at their top).
    pub stacks: u64,
    /// malloc's memory: the main heap (`[heap]`) and glibc's per-thread arenas (anonymous
    /// mappings aligned to 64 MiB).
    pub malloc: u64,
    /// Other anonymous memory: allocations big enough to get a mapping of their own
    /// (128 KiB and up), signal stacks, the main thread's stack.
    pub other_anon: u64,
    /// File-backed pages: the program and its libraries.
    pub file: u64,
}

impl Rss {
    /// This process, now; all zero where `/proc/self/smaps` cannot be read.
    pub fn now() -> Rss {
        let text = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
        let mut rss = Rss::default();
        // (start, end, accessible) of the previous mapping.
        let mut prev: Option<(u64, u64, bool)> = None;
        let mut current: Option<Kind> = None;
        for line in text.lines() {
            if let Some(kb) = line.strip_prefix("Rss:") {
                let kb: u64 = kb.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
                match current {
                    Some(Kind::Stack) => rss.stacks += kb,
                    Some(Kind::Malloc) => rss.malloc += kb,
                    Some(Kind::OtherAnon) => rss.other_anon += kb,
                    Some(Kind::File) => rss.file += kb,
                    None => {}
                }
                continue;
            }
            let mut fields = line.split_whitespace();
            let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
                continue;
            };
            let Some((start, end)) = range.split_once('-') else {
                continue;
            };
            let (Ok(start), Ok(end)) =
                (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
            else {
                continue; // a field line, not a mapping
            };
            let name = fields.nth(3).unwrap_or("");
            let writable = perms.starts_with("rw");
            let guard_below =
                matches!(prev, Some((ps, pe, false)) if pe == start && pe - ps <= 64 * 1024);
            current = Some(if name == "[heap]" {
                Kind::Malloc
            } else if !name.is_empty() && !name.starts_with('[') {
                Kind::File
            } else if writable && name.is_empty() && start % (64 << 20) == 0 {
                Kind::Malloc
            } else if writable && name.is_empty() && guard_below && end - start >= 32 * 1024 {
                Kind::Stack
            } else {
                Kind::OtherAnon
            });
            let no_access = perms.starts_with("---");
            prev = Some((start, end, !no_access));
        }
        rss
    }

    /// The growth from `before` to `self`, in bytes per one of `n`, as JSON.
    pub fn per(&self, before: &Rss, n: usize) -> serde_json::Value {
        let per = |a: u64, b: u64| (a.saturating_sub(b) as f64 * 1024.0 / n.max(1) as f64).round();
        serde_json::json!({
            "thread_stacks": per(self.stacks, before.stacks),
            "malloc": per(self.malloc, before.malloc),
            "other_anon": per(self.other_anon, before.other_anon),
            "file": per(self.file, before.file),
        })
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Stack,
    Malloc,
    OtherAnon,
    File,
}
