//! The public API, listed: every item a user can name, its declaration, its inherent
//! methods and the traits it implements, as rustdoc renders them with the default
//! features. The list lives in `tests/public_api.txt`, so any change to the surface shows
//! in review as a change to that file.
//!
//! The test documents the crate into a target directory of its own and compares. When the
//! surface changes on purpose, regenerate the list and commit it with the change (and a
//! line in CHANGELOG.md):
//!
//! ```text
//! DPSPEC_BLESS=1 cargo test --test public_api
//! ```
//!
//! The text is rustdoc's rendering, so a new toolchain may reword a line; bless it then
//! too, after checking that only the rendering moved.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The kinds of item pages rustdoc writes, by file-name prefix.
const KINDS: [&str; 7] = ["struct", "enum", "trait", "fn", "constant", "type", "macro"];

#[test]
fn the_public_api_is_the_listed_one() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let docs = document(root);
    let listed = render(&surface(&docs.join("dpspec")));
    let file = root.join("tests/public_api.txt");
    if std::env::var_os("DPSPEC_BLESS").is_some() {
        fs::write(&file, &listed).unwrap();
        return;
    }
    let kept = fs::read_to_string(&file).unwrap_or_default();
    if kept != listed {
        let (gone, new) = diff(&kept, &listed);
        panic!(
            "the public API changed.\n\nno longer public:\n{}\n\nnewly public:\n{}\n\n\
             If that is meant, run `DPSPEC_BLESS=1 cargo test --test public_api`, commit \
             tests/public_api.txt and say what changed in CHANGELOG.md.",
            gone.join("\n"),
            new.join("\n"),
        );
    }
}

/// Runs rustdoc on the library (default features) into a target directory of this
/// test's own, so it never waits on or disturbs the build that runs the tests.
fn document(root: &Path) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("public-api");
    let status = Command::new(env!("CARGO"))
        .args(["doc", "--no-deps", "--lib", "--quiet"])
        .arg("--target-dir")
        .arg(&target)
        .current_dir(root)
        .env_remove("RUSTDOCFLAGS")
        .env_remove("RUSTFLAGS")
        .status()
        .expect("cargo doc starts");
    assert!(status.success(), "cargo doc failed: {status}");
    target.join("doc")
}

/// Every item page under `dir`: its path (`dpspec::a::B`) and its lines.
fn surface(dir: &Path) -> BTreeMap<String, Vec<String>> {
    let mut items = BTreeMap::new();
    walk(dir, &mut |page| {
        let name = page.file_name().unwrap().to_str().unwrap();
        let Some((kind, rest)) = name.split_once('.') else {
            return;
        };
        if !KINDS.contains(&kind) || !rest.ends_with(".html") {
            return;
        }
        let module = page
            .parent()
            .unwrap()
            .strip_prefix(dir.parent().unwrap())
            .unwrap()
            .components()
            .map(|c| c.as_os_str().to_str().unwrap())
            .collect::<Vec<_>>()
            .join("::");
        let html = fs::read_to_string(page).unwrap();
        // rustdoc leaves a redirect at an item's private home when it is re-exported.
        if html.contains("http-equiv=\"refresh\"") {
            return;
        }
        let path = format!("{kind} {module}::{}", rest.trim_end_matches(".html"));
        items.insert(path, lines(&html));
    });
    items
}

fn walk(dir: &Path, f: &mut impl FnMut(&Path)) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, f);
        } else {
            f(&path);
        }
    }
}

/// What one item page promises: its declaration, then each impl block with, for
/// inherent impls, its methods. Blanket impls (`impl<T> From<T> for T`, ...) are the
/// standard library's, not ours, and are left out.
fn lines(page: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(decl) = between(
        page,
        "<pre class=\"rust item-decl\"><code>",
        "</code></pre>",
    ) {
        out.push(text(decl));
    }
    let end = page
        .find("id=\"blanket-implementations\"")
        .unwrap_or(page.len());
    let mut rest = &page[..end];
    let mut inherent = false;
    while let Some(i) = rest.find("class=\"code-header\">") {
        let tag = &rest[i.saturating_sub(3)..i];
        let body = &rest[i + "class=\"code-header\">".len()..];
        let close = if tag.starts_with("h3") {
            "</h3>"
        } else {
            "</h4>"
        };
        let Some(j) = body.find(close) else { break };
        let header = text(&body[..j]);
        if tag.starts_with("h3") {
            inherent = !header.contains(" for ");
            out.push(header);
        } else if inherent {
            out.push(format!("    {header}"));
        }
        rest = &body[j..];
    }
    out
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let i = s.find(start)? + start.len();
    let j = s[i..].find(end)? + i;
    Some(&s[i..j])
}

/// The text of an HTML fragment, tags dropped, entities decoded, whitespace runs made
/// one space.
fn text(html: &str) -> String {
    let mut out = String::new();
    let mut rest = html;
    while let Some(i) = rest.find('<') {
        out.push_str(&rest[..i]);
        let Some(j) = rest[i..].find('>') else { break };
        let tag = &rest[i + 1..i + j];
        // A line break or a block (a `where` clause) separates words; inline tags do not.
        if tag.starts_with("br") || tag.starts_with("div") {
            out.push(' ');
        }
        rest = &rest[i + j + 1..];
    }
    out.push_str(rest);
    let out = out
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&");
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn render(items: &BTreeMap<String, Vec<String>>) -> String {
    let mut s = String::new();
    for (path, lines) in items {
        s.push_str(path);
        s.push('\n');
        for line in lines {
            s.push_str("  ");
            s.push_str(line);
            s.push('\n');
        }
    }
    s
}

/// The lines of `old` missing from `new`, and those of `new` missing from `old`, each
/// under the item it belongs to.
fn diff(old: &str, new: &str) -> (Vec<String>, Vec<String>) {
    let keyed = |s: &str| {
        let mut item = String::new();
        let mut set = std::collections::BTreeSet::new();
        for line in s.lines() {
            if !line.starts_with(' ') {
                item = line.to_string();
                set.insert(item.clone());
            } else {
                set.insert(format!("{item} >{line}"));
            }
        }
        set
    };
    let (a, b) = (keyed(old), keyed(new));
    (
        a.difference(&b).cloned().collect(),
        b.difference(&a).cloned().collect(),
    )
}
