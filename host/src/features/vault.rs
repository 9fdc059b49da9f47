//! An Obsidian-friendly Markdown copy of the queue: one note per memory at
//! `<vault>/Mem0/<project>/<yyyy-mm-dd>-<slug>.md`, with YAML front matter
//! (id, project, created, state, remote_ids, tags) and the memory's text as
//! the body, plus an `index.md` per project linking them with [[wikilinks]].
//!
//! What it writes and what it leaves alone:
//! - It only ever writes files whose front matter says `mem0_queue: true`
//!   (the notes and indexes it wrote itself), and never deletes anything.
//!   A note of the user's, in these folders or anywhere else, is never read
//!   beyond its front matter, never moved and never replaced: a new memory
//!   whose name is taken gets a short id suffix instead.
//! - A note the user wants to keep as edited: set `mem0_queue: false` in its
//!   front matter; that memory is then never written again.
//! - Idempotent: a note is rewritten only when its bytes would change (an
//!   entry's state moved on, its remote ids arrived), through a temp file
//!   and a rename, so an unchanged note keeps its mtime and a sync tool
//!   (Obsidian Sync, Syncthing, git) sees nothing.
//! - An entry `in_flight` is written as `pending`: the lease is a moment in
//!   a delivery, not a state worth a file write.
//!
//! [`export_once`] serves `mem0-queue export --vault DIR`; [`mirror_loop`]
//! keeps the vault up to date while `serve` runs (config `vault_dir`), on a
//! connection of its own so that a save never waits for it.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::engine::app::App;
use crate::engine::store::{EntryView, State, Store, StoreError};

/// The folder under the vault that mem0-queue writes into.
pub const ROOT: &str = "Mem0";

/// The per-project index note.
pub const INDEX: &str = "index.md";

/// The longest slug taken from a memory's first words.
const SLUG_MAX: usize = 50;

/// The longest project folder name (before its hash suffix).
const FOLDER_MAX: usize = 40;

/// How much of a file is read to find its front matter.
const FRONT_MATTER_MAX: u64 = 16 * 1024;

/// How often the `serve` mirror looks for changes in the queue.
pub const MIRROR_POLL: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("the vault {0} does not exist or is not a directory (point it at your Obsidian vault)")]
    NotADir(PathBuf),
    #[error("cannot write to the vault {dir}: {what} {path}: {source}")]
    Write {
        dir: PathBuf,
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the vault {dir}: {path}: {source}")]
    Read {
        dir: PathBuf,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an export did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExportReport {
    /// Notes created or updated.
    pub written: usize,
    pub unchanged: usize,
    /// Notes of ours removed: their memory was deleted.
    pub removed: usize,
    /// Memories whose note the user took over (`mem0_queue: false`).
    pub kept_as_yours: usize,
    /// Index notes created or updated.
    pub indexes_written: usize,
    /// Index notes not written because a note of the user's holds the name.
    pub indexes_skipped: usize,
}

impl ExportReport {
    pub fn text(&self, root: &Path) -> String {
        let mut s = format!(
            "exported to {}: {} notes written, {} unchanged, {} index notes written",
            root.display(),
            self.written,
            self.unchanged,
            self.indexes_written
        );
        if self.removed > 0 {
            s.push_str(&format!(
                "; {} notes removed (their memory was deleted)",
                self.removed
            ));
        }
        if self.kept_as_yours > 0 {
            s.push_str(&format!(
                "; {} kept as you edited them (mem0_queue: false)",
                self.kept_as_yours
            ));
        }
        if self.indexes_skipped > 0 {
            s.push_str(&format!(
                "; {} index notes not written: a note of yours is named {INDEX}",
                self.indexes_skipped
            ));
        }
        s
    }
}

/// Every live memory, with its text, oldest first (changes queued for
/// Mem0 are not memories; deleted memories are not listed).
pub fn read_entries(store: &Store) -> Result<Vec<EntryView>, StoreError> {
    let mut all = Vec::new();
    for state in State::ALL {
        all.extend(
            store
                .list(state, i64::MAX as usize, true)?
                .into_iter()
                .filter(|e| e.op == crate::engine::store::Op::Add),
        );
    }
    all.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    Ok(all)
}

/// `mem0-queue export --vault DIR`: one full export.
pub fn export_once(store: &Store, vault: &Path) -> Result<ExportReport, VaultError> {
    let entries = read_entries(store)?;
    let gone = store.tombstones()?;
    let mut ex = Exporter::new(expand_home(vault));
    let mut report = ex.export(&entries)?;
    report.removed = ex.remove(&gone)?;
    Ok(report)
}

/// `~/x` as `$HOME/x`: a config file's `vault_dir = "~/SecondBrain"` is
/// not seen by a shell.
pub fn expand_home(p: &Path) -> PathBuf {
    match (p.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) if !home.is_empty() => PathBuf::from(home).join(rest),
        _ => p.to_path_buf(),
    }
}

/// A safe folder name for a project: kept as it is when it is already
/// ASCII letters, digits, `-` and `_`; otherwise folded to lowercase
/// letters, digits and hyphens and suffixed with a hash of the original, so
/// that two projects never share a folder. (Two projects that differ only
/// in case, which would share one on a case-insensitive disk, are told
/// apart by [`Exporter::export`].)
pub fn project_folder(project: &str) -> String {
    let plain = !project.is_empty()
        && project.len() <= FOLDER_MAX
        && project
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !project.starts_with(['-', '_']);
    if plain {
        return project.to_string();
    }
    hashed_folder(project)
}

fn hashed_folder(project: &str) -> String {
    let mut base = fold(project, FOLDER_MAX, true);
    if base.is_empty() {
        base = "project".into();
    }
    let hash = hex(&Sha256::digest(project.as_bytes()))[..8].to_string();
    format!("{base}-{hash}")
}

/// The folder of each project: [`project_folder`], except that among
/// projects whose folders differ only in case (one folder on macOS's
/// default disk) all but an all-lowercase one get a hash suffix.
fn folders_for<'a>(projects: impl IntoIterator<Item = &'a str>) -> HashMap<String, String> {
    let mut by_lower: HashMap<String, Vec<&str>> = HashMap::new();
    for p in projects {
        let group = by_lower
            .entry(project_folder(p).to_lowercase())
            .or_default();
        if !group.contains(&p) {
            group.push(p);
        }
    }
    let mut out = HashMap::new();
    for group in by_lower.into_values() {
        for p in &group {
            let f = project_folder(p);
            let clash = group.len() > 1 && f != f.to_lowercase();
            out.insert(p.to_string(), if clash { hashed_folder(p) } else { f });
        }
    }
    out
}

/// A slug from the first words of a text: lowercase ASCII letters, digits
/// and single hyphens, at most [`SLUG_MAX`] bytes, never empty.
pub fn slug(text: &str) -> String {
    let s = fold(text, SLUG_MAX, false);
    if s.is_empty() { "memory".into() } else { s }
}

/// Lowercases, folds common accented letters to ASCII, turns every other
/// run of characters into one `-` (or `_` kept when `keep_underscore`),
/// and cuts at `max` bytes on a word boundary when there is one.
fn fold(text: &str, max: usize, keep_underscore: bool) -> String {
    let mut out = String::new();
    let mut pending_dash = false;
    // Only the first few hundred characters matter.
    for c in text.chars().take(max * 4) {
        for c in c.to_lowercase() {
            let ascii: &str = match c {
                'a'..='z' | '0'..='9' => {
                    if pending_dash && !out.is_empty() {
                        out.push('-');
                    }
                    pending_dash = false;
                    out.push(c);
                    continue;
                }
                '_' if keep_underscore => "_",
                'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => "a",
                'æ' => "ae",
                'ç' | 'ć' | 'č' => "c",
                'ď' | 'đ' | 'ð' => "d",
                'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ė' | 'ę' | 'ě' => "e",
                'ğ' => "g",
                'ì' | 'í' | 'î' | 'ï' | 'ī' | 'į' | 'ı' => "i",
                'ł' | 'ľ' => "l",
                'ñ' | 'ń' | 'ň' => "n",
                'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ő' => "o",
                'œ' => "oe",
                'ř' => "r",
                'ś' | 'š' | 'ş' => "s",
                'ß' => "ss",
                'ť' | 'ţ' => "t",
                'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ů' | 'ű' => "u",
                'ý' | 'ÿ' => "y",
                'ź' | 'ž' | 'ż' => "z",
                _ => {
                    pending_dash = true;
                    continue;
                }
            };
            if pending_dash && !out.is_empty() {
                out.push('-');
            }
            pending_dash = false;
            out.push_str(ascii);
        }
        // One byte past the limit tells whether the cut falls in a word.
        if out.len() > max {
            break;
        }
    }
    if out.len() > max {
        let cut = if out.as_bytes()[max] == b'-' {
            max
        } else {
            // Cut at the last hyphen inside the limit, if that keeps a word.
            match out[..max].rfind('-') {
                Some(i) if i >= max / 2 => i,
                _ => max,
            }
        };
        out.truncate(cut);
    }
    out.trim_matches(['-', '_']).to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A YAML double-quoted scalar: safe for any text.
pub fn yaml_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20
                || c == '\u{7f}'
                || c == '\u{85}'
                || c == '\u{2028}'
                || c == '\u{2029}'
                || c == '\u{feff}' =>
            {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn yaml_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| yaml_quote(s)).collect();
    format!("[{}]", quoted.join(", "))
}

/// The state a note shows.
fn note_state(s: State) -> &'static str {
    match s {
        State::InFlight => State::Pending.as_str(),
        s => s.as_str(),
    }
}

/// `metadata.tags`, when it is a list of strings.
fn tags(metadata: &serde_json::Value) -> Vec<String> {
    match metadata.get("tags").and_then(|t| t.as_array()) {
        Some(list) if list.iter().all(|t| t.is_string()) => list
            .iter()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// A note's full text.
pub fn render_note(e: &EntryView) -> String {
    let mut s = String::from("---\nmem0_queue: true\n");
    s.push_str(&format!("id: {}\n", yaml_quote(&e.id)));
    s.push_str(&format!("project: {}\n", yaml_quote(&e.project)));
    if let Some(a) = &e.agent_id {
        s.push_str(&format!("agent_id: {}\n", yaml_quote(a)));
    }
    if let Some(r) = &e.run_id {
        s.push_str(&format!("run_id: {}\n", yaml_quote(r)));
    }
    s.push_str(&format!(
        "created: {}\n",
        yaml_quote(&crate::engine::text::rfc3339(e.created_at))
    ));
    s.push_str(&format!("state: {}\n", yaml_quote(note_state(e.state))));
    s.push_str(&format!("remote_ids: {}\n", yaml_list(&e.remote_ids)));
    s.push_str(&format!("tags: {}\n", yaml_list(&tags(&e.metadata))));
    s.push_str("---\n");
    let body = e.content.as_deref().unwrap_or_default();
    s.push_str(body);
    if !body.ends_with('\n') {
        s.push('\n');
    }
    s
}

/// The front matter of a Markdown text, as `key -> scalar` (lists are
/// left out). Tolerant of what Obsidian's property editor writes: plain,
/// single- and double-quoted scalars.
pub fn front_matter(text: &str) -> Option<HashMap<String, String>> {
    let rest = text
        .strip_prefix("---\n")
        .or_else(|| text.strip_prefix("---\r\n"))?;
    let mut map = HashMap::new();
    for line in rest.lines() {
        let line = line.trim_end_matches('\r');
        if line == "---" || line == "..." {
            return Some(map);
        }
        if line.starts_with([' ', '\t', '-', '#']) {
            continue;
        }
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        if v.starts_with('[') || v.is_empty() {
            continue;
        }
        map.insert(k.trim().to_string(), yaml_scalar(v));
    }
    None
}

/// The value of a YAML scalar as written in our front matter (and close
/// enough for the ones Obsidian rewrites).
fn yaml_scalar(v: &str) -> String {
    if let Some(inner) = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('t') => out.push('\t'),
                Some('u') => {
                    let code: String = chars.by_ref().take(4).collect();
                    if let Some(c) = u32::from_str_radix(&code, 16).ok().and_then(char::from_u32) {
                        out.push(c);
                    }
                }
                Some(c) => out.push(c),
                None => {}
            }
        }
        return out;
    }
    if let Some(inner) = v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
        return inner.replace("''", "'");
    }
    // A plain scalar; drop a trailing comment.
    match v.find(" #") {
        Some(i) => v[..i].trim().to_string(),
        None => v.to_string(),
    }
}

/// The body of a note: what follows its front matter.
fn body_of(text: &str) -> &str {
    let Some(rest) = text.strip_prefix("---\n") else {
        return text;
    };
    let mut offset = 0;
    for line in rest.split_inclusive('\n') {
        offset += line.len();
        if line.trim_end() == "---" {
            return &rest[offset..];
        }
    }
    ""
}

/// What an index line needs about a note.
#[derive(Debug, Clone)]
struct IndexItem {
    stem: String,
    created: String,
    state: String,
    title: String,
}

fn title_of(body: &str) -> String {
    let first = body
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("(empty)");
    let mut t: String = first
        .chars()
        .map(|c| match c {
            '[' | ']' | '|' | '#' | '^' | '`' => ' ',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if t.chars().count() > 80 {
        t = t.chars().take(79).collect::<String>() + "…";
    }
    if t.is_empty() { "(untitled)".into() } else { t }
}

/// One project folder as found on disk.
#[derive(Default)]
struct Folder {
    /// Notes of ours, by memory id.
    ours: HashMap<String, PathBuf>,
    /// What the index lists of notes of ours, by file name.
    items: HashMap<String, IndexItem>,
    /// Memory ids whose note the user took over.
    users: HashSet<String>,
    /// Every name in the folder, lowercased (for case-insensitive disks).
    taken: HashSet<String>,
    /// The project's name, as read from a note of ours.
    project: Option<String>,
}

/// Writes notes, remembering what it wrote so that a long-running mirror
/// does not read every note again at each change.
pub struct Exporter {
    vault: PathBuf,
    folders: HashMap<String, Folder>,
    /// The hash of what this exporter last wrote or found, by path.
    written: HashMap<PathBuf, [u8; 32]>,
}

impl Exporter {
    pub fn new(vault: PathBuf) -> Self {
        Self {
            vault,
            folders: HashMap::new(),
            written: HashMap::new(),
        }
    }

    pub fn root(&self) -> PathBuf {
        self.vault.join(ROOT)
    }

    fn werr(&self, what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> VaultError {
        let dir = self.vault.clone();
        let path = path.to_path_buf();
        move |source| VaultError::Write {
            dir,
            what,
            path,
            source,
        }
    }

    /// Writes every entry's note that is missing or out of date, and each
    /// touched project's index.
    pub fn export(&mut self, entries: &[EntryView]) -> Result<ExportReport, VaultError> {
        if !self.vault.is_dir() {
            return Err(VaultError::NotADir(self.vault.clone()));
        }
        let mut report = ExportReport::default();
        let folders = folders_for(entries.iter().map(|e| e.project.as_str()));
        let mut by_folder: Vec<(String, Vec<&EntryView>)> = Vec::new();
        {
            let mut idx: HashMap<String, usize> = HashMap::new();
            for e in entries {
                let f = folders
                    .get(&e.project)
                    .cloned()
                    .unwrap_or_else(|| hashed_folder(&e.project));
                let i = *idx.entry(f.clone()).or_insert_with(|| {
                    by_folder.push((f, Vec::new()));
                    by_folder.len() - 1
                });
                by_folder[i].1.push(e);
            }
        }
        for (folder, list) in by_folder {
            self.export_folder(&folder, &list, &mut report)?;
        }
        Ok(report)
    }

    fn export_folder(
        &mut self,
        folder: &str,
        entries: &[&EntryView],
        report: &mut ExportReport,
    ) -> Result<(), VaultError> {
        let dir = self.root().join(folder);
        if !self.folders.contains_key(folder) {
            let scanned = self.scan(&dir)?;
            self.folders.insert(folder.to_string(), scanned);
        }
        let mut changed = false;
        for e in entries {
            let Some(f) = self.folders.get(folder) else {
                continue;
            };
            if f.users.contains(&e.id) {
                report.kept_as_yours += 1;
                continue;
            }
            let text = render_note(e);
            let hash: [u8; 32] = Sha256::digest(text.as_bytes()).into();
            let existing = f.ours.get(&e.id).cloned();
            let path = match existing {
                Some(p) => p,
                None => {
                    self.ensure_dir(&dir)?;
                    let p = self.new_note_path(folder, &dir, e);
                    if let Some(f) = self.folders.get_mut(folder) {
                        f.ours.insert(e.id.clone(), p.clone());
                    }
                    p
                }
            };
            let item = IndexItem {
                stem: stem_of(&path),
                created: crate::engine::text::rfc3339(e.created_at),
                state: note_state(e.state).to_string(),
                title: title_of(e.content.as_deref().unwrap_or_default()),
            };
            if let Some(f) = self.folders.get_mut(folder) {
                f.project.get_or_insert_with(|| e.project.clone());
                f.items.insert(file_name(&path), item);
            }
            if self.written.get(&path) == Some(&hash) {
                report.unchanged += 1;
                continue;
            }
            match self.write_if_ours(&dir, &path, &text, true)? {
                Outcome::Written => {
                    report.written += 1;
                    changed = true;
                }
                Outcome::Unchanged => report.unchanged += 1,
                Outcome::NotOurs => {
                    // The user took the note over since we last looked.
                    if let Some(f) = self.folders.get_mut(folder) {
                        f.ours.remove(&e.id);
                        f.items.remove(&file_name(&path));
                        f.users.insert(e.id.clone());
                    }
                    report.kept_as_yours += 1;
                    continue;
                }
            }
            self.written.insert(path, hash);
        }
        let index_path = dir.join(INDEX);
        let index_known = self.written.contains_key(&index_path);
        if changed || !index_known {
            let Some(f) = self.folders.get(folder) else {
                return Ok(());
            };
            if f.items.is_empty() {
                return Ok(());
            }
            let text = render_index(f.project.as_deref().unwrap_or(folder), &f.items);
            let hash: [u8; 32] = Sha256::digest(text.as_bytes()).into();
            if self.written.get(&index_path) != Some(&hash) {
                self.ensure_dir(&dir)?;
                match self.write_if_ours(&dir, &index_path, &text, false)? {
                    Outcome::Written => report.indexes_written += 1,
                    Outcome::Unchanged => {}
                    Outcome::NotOurs => {
                        report.indexes_skipped += 1;
                        return Ok(());
                    }
                }
                self.written.insert(index_path, hash);
            }
        }
        Ok(())
    }

    /// Removes the notes of ours whose memory was deleted, (local id,
    /// project) each, and rewrites the indexes they were in. A note the user
    /// took over (`mem0_queue: false`) or changed into something else stays.
    pub fn remove(&mut self, gone: &[(String, String)]) -> Result<usize, VaultError> {
        if gone.is_empty() || !self.vault.is_dir() {
            return Ok(0);
        }
        let folders = folders_for(gone.iter().map(|(_, p)| p.as_str()));
        let mut removed = 0;
        let mut touched = Vec::new();
        for (id, project) in gone {
            let folder = folders
                .get(project)
                .cloned()
                .unwrap_or_else(|| hashed_folder(project));
            let dir = self.root().join(&folder);
            if !self.folders.contains_key(&folder) {
                let scanned = self.scan(&dir)?;
                self.folders.insert(folder.clone(), scanned);
            }
            let Some(path) = self
                .folders
                .get(&folder)
                .and_then(|f| f.ours.get(id).cloned())
            else {
                continue;
            };
            let ours = std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| front_matter(&t))
                .is_some_and(|fm| {
                    fm.get("mem0_queue").map(String::as_str) == Some("true")
                        && fm.get("id").map(String::as_str) == Some(id.as_str())
                });
            if !ours {
                continue;
            }
            std::fs::remove_file(&path).map_err(self.werr("cannot remove", &path))?;
            removed += 1;
            self.written.remove(&path);
            if let Some(f) = self.folders.get_mut(&folder) {
                f.ours.remove(id);
                f.items.remove(&file_name(&path));
            }
            if !touched.contains(&folder) {
                touched.push(folder);
            }
        }
        for folder in touched {
            let dir = self.root().join(&folder);
            let index_path = dir.join(INDEX);
            let Some(f) = self.folders.get(&folder) else {
                continue;
            };
            let text = render_index(f.project.as_deref().unwrap_or(&folder), &f.items);
            if self.write_if_ours(&dir, &index_path, &text, false)? == Outcome::Written {
                let hash: [u8; 32] = Sha256::digest(text.as_bytes()).into();
                self.written.insert(index_path, hash);
            }
        }
        Ok(removed)
    }

    /// Reads a project folder: which notes are ours, which names are taken.
    fn scan(&self, dir: &Path) -> Result<Folder, VaultError> {
        let mut f = Folder::default();
        let rd = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(f),
            Err(source) => {
                return Err(VaultError::Read {
                    dir: self.vault.clone(),
                    path: dir.to_path_buf(),
                    source,
                });
            }
        };
        let mut names: Vec<(String, PathBuf)> = Vec::new();
        for ent in rd.flatten() {
            let name = ent.file_name().to_string_lossy().into_owned();
            f.taken.insert(name.to_lowercase());
            names.push((name, ent.path()));
        }
        names.sort();
        for (name, path) in names {
            if !name.ends_with(".md") || name == INDEX {
                continue;
            }
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let Some(head) = read_head(&path) else {
                continue;
            };
            let Some(fm) = front_matter(&head) else {
                continue;
            };
            let Some(id) = fm.get("id").cloned() else {
                continue;
            };
            match fm.get("mem0_queue").map(String::as_str) {
                Some("true") => {
                    if f.ours.contains_key(&id) {
                        continue; // a copy; the first one by name is the note
                    }
                    let Ok(full) = std::fs::read_to_string(&path) else {
                        continue;
                    };
                    if let Some(p) = fm.get("project") {
                        f.project.get_or_insert_with(|| p.clone());
                    }
                    f.items.insert(
                        name.clone(),
                        IndexItem {
                            stem: stem_of(&path),
                            created: fm.get("created").cloned().unwrap_or_default(),
                            state: fm.get("state").cloned().unwrap_or_default(),
                            title: title_of(body_of(&full)),
                        },
                    );
                    f.ours.insert(id, path);
                }
                Some("false") => {
                    f.users.insert(id);
                }
                _ => {}
            }
        }
        Ok(f)
    }

    /// A free name for a new note: `<date>-<slug>.md`, else with a short id
    /// suffix, else with the whole id.
    fn new_note_path(&mut self, folder: &str, dir: &Path, e: &EntryView) -> PathBuf {
        let date = &crate::engine::text::rfc3339(e.created_at)[..10];
        let slug = slug(e.content.as_deref().unwrap_or_default());
        let simple: String = e.id.chars().filter(char::is_ascii_alphanumeric).collect();
        let short = &simple[simple.len().saturating_sub(8)..];
        let candidates = [
            format!("{date}-{slug}.md"),
            format!("{date}-{slug}-{short}.md"),
            format!("{date}-{slug}-{simple}.md"),
        ];
        let Some(f) = self.folders.get_mut(folder) else {
            return dir.join(&candidates[2]);
        };
        for c in &candidates {
            let lower = c.to_lowercase();
            if !f.taken.contains(&lower) && std::fs::symlink_metadata(dir.join(c)).is_err() {
                f.taken.insert(lower);
                return dir.join(c);
            }
        }
        // Every candidate is taken (user notes bear this memory's full id).
        for n in 2..10_000u32 {
            let c = format!("{date}-{slug}-{simple}-{n}.md");
            let lower = c.to_lowercase();
            if !f.taken.contains(&lower) && std::fs::symlink_metadata(dir.join(&c)).is_err() {
                f.taken.insert(lower);
                return dir.join(c);
            }
        }
        // Written through a hard link, which fails rather than replace.
        dir.join(&candidates[2])
    }

    fn ensure_dir(&self, dir: &Path) -> Result<(), VaultError> {
        if dir.is_dir() {
            return Ok(());
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(self.werr("cannot create", dir))
    }

    /// Writes `text` at `path` unless the file there is not ours; leaves it
    /// alone (mtime included) when it already holds these bytes. A new file
    /// never replaces one that appeared meanwhile.
    fn write_if_ours(
        &self,
        dir: &Path,
        path: &Path,
        text: &str,
        is_note: bool,
    ) -> Result<Outcome, VaultError> {
        let mut mode = 0o600;
        let exists = match std::fs::symlink_metadata(path) {
            Ok(meta) => {
                if !meta.is_file() {
                    return Ok(Outcome::NotOurs);
                }
                let current = std::fs::read(path).map_err(|source| VaultError::Read {
                    dir: self.vault.clone(),
                    path: path.to_path_buf(),
                    source,
                })?;
                if current == text.as_bytes() {
                    return Ok(Outcome::Unchanged);
                }
                let current = String::from_utf8_lossy(&current);
                let fm = front_matter(&current).unwrap_or_default();
                let ours = fm.get("mem0_queue").map(String::as_str) == Some("true")
                    && (!is_note || fm.contains_key("id"));
                if !ours {
                    return Ok(Outcome::NotOurs);
                }
                mode = meta.permissions().mode() & 0o777;
                true
            }
            Err(_) => false,
        };
        let tmp = dir.join(format!(
            ".{}.mem0-queue.{}.tmp",
            file_name(path),
            uuid::Uuid::now_v7().simple()
        ));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            Ok(())
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            return Err(self.werr("cannot write", &tmp)(e));
        }
        let placed = if exists {
            std::fs::rename(&tmp, path)
        } else {
            // A hard link fails when the name exists: a note the user
            // created meanwhile is never replaced.
            match std::fs::hard_link(&tmp, path) {
                Ok(()) => std::fs::remove_file(&tmp),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let _ = std::fs::remove_file(&tmp);
                    return Ok(Outcome::NotOurs);
                }
                // A filesystem without hard links (exFAT): check, then rename.
                Err(_) if std::fs::symlink_metadata(path).is_err() => std::fs::rename(&tmp, path),
                Err(e) => Err(e),
            }
        };
        if let Err(e) = placed {
            let _ = std::fs::remove_file(&tmp);
            return Err(self.werr("cannot write", path)(e));
        }
        Ok(Outcome::Written)
    }
}

#[derive(PartialEq, Eq)]
enum Outcome {
    Written,
    Unchanged,
    NotOurs,
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn stem_of(p: &Path) -> String {
    p.file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn read_head(path: &Path) -> Option<String> {
    use std::io::Read;
    let f = std::fs::File::open(path).ok()?;
    let mut buf = Vec::new();
    f.take(FRONT_MATTER_MAX).read_to_end(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// A project's index note: its memories, newest first.
fn render_index(project: &str, items: &HashMap<String, IndexItem>) -> String {
    let mut list: Vec<&IndexItem> = items.values().collect();
    list.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.stem.cmp(&b.stem)));
    let mut s = String::from("---\nmem0_queue: true\nmem0_queue_index: true\n");
    s.push_str(&format!("project: {}\n", yaml_quote(project)));
    s.push_str("---\n");
    s.push_str(&format!("# Mem0: {}\n\n", title_of(project)));
    s.push_str(&format!(
        "{} {}, newest first. Written by mem0-queue, which never touches your own notes.\n\n",
        list.len(),
        if list.len() == 1 {
            "memory"
        } else {
            "memories"
        }
    ));
    for i in list {
        let day = i.created.get(..10).unwrap_or(&i.created);
        s.push_str(&format!(
            "- [[{}|{}]] · {} · {}\n",
            i.stem, i.title, day, i.state
        ));
    }
    s
}

/// A cheap summary of the queue that changes with every save and every
/// state change: the mirror exports again when it does.
fn fingerprint(s: &Store) -> Result<String, StoreError> {
    let st = s.stats()?;
    Ok(format!(
        "{:?}/{}/{}/{:?}/{}",
        st.counts,
        st.total_queued,
        st.total_synced,
        st.last_success,
        s.local_changes()?
    ))
}

/// Keeps the vault up to date while `serve` runs (config `vault_dir`): an
/// export whenever the queue changed (a save, a delivery, a retry), checked
/// every [`MIRROR_POLL`], on a store connection of its own (WAL readers
/// never block a writer), off every save's path. A failure is logged once
/// and tried again at the next change.
pub async fn mirror_loop(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let Some(vault) = app.config().vault_dir.as_deref().map(expand_home) else {
        return;
    };
    let db = app.paths.db();
    let state: Arc<std::sync::Mutex<Option<(Store, Exporter)>>> =
        Arc::new(std::sync::Mutex::new(None));
    let mut last: Option<String> = None;
    let mut stopping = false;
    loop {
        let st = state.clone();
        let vault = vault.clone();
        let db = db.clone();
        let seen = last.clone();
        let done = tokio::task::spawn_blocking(move || -> Result<Option<String>, String> {
            let mut guard = st.lock().unwrap_or_else(|p| p.into_inner());
            if guard.is_none() {
                let store = Store::open(&db).map_err(|e| e.to_string())?;
                *guard = Some((store, Exporter::new(vault)));
            }
            let Some((store, exporter)) = guard.as_mut() else {
                return Ok(seen);
            };
            let fp = fingerprint(store).map_err(|e| e.to_string())?;
            if seen.as_deref() == Some(fp.as_str()) {
                return Ok(seen);
            }
            let result = read_entries(store)
                .and_then(|entries| Ok((entries, store.tombstones()?)))
                .map_err(VaultError::from)
                .and_then(|(entries, gone)| {
                    let mut r = exporter.export(&entries)?;
                    r.removed = exporter.remove(&gone)?;
                    Ok(r)
                });
            match result {
                Ok(r) if r.written + r.indexes_written + r.removed > 0 => {
                    tracing::info!(written = r.written, "mirrored the queue to the vault");
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "the vault mirror failed; it is tried again at the next save");
                    // A fresh scan next time: the vault may have changed.
                    exporter.folders.clear();
                    exporter.written.clear();
                }
            }
            Ok(Some(fp))
        })
        .await;
        match done {
            Ok(Ok(fp)) => last = fp,
            Ok(Err(e)) => tracing::warn!(error = %e, "the vault mirror cannot read the queue"),
            Err(e) => tracing::warn!(error = %e, "the vault mirror task failed"),
        }
        if stopping {
            return;
        }
        // One last look at shutdown: a save of the last moments is mirrored.
        tokio::select! {
            _ = tokio::time::sleep(MIRROR_POLL) => {}
            _ = stop.changed() => stopping = true,
        }
        stopping |= *stop.borrow();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_safe_and_never_empty() {
        assert_eq!(slug("Hello, World! Ça marche"), "hello-world-ca-marche");
        assert_eq!(slug("../../etc/passwd"), "etc-passwd");
        assert_eq!(slug("…"), "memory");
        assert_eq!(slug(""), "memory");
        let long = slug(&"word ".repeat(40));
        assert!(long.len() <= SLUG_MAX, "{long}");
        assert!(!long.ends_with('-'));
        assert!(long.split('-').all(|w| w == "word"), "{long}");
        assert_eq!(
            slug("Use WAL mode for the queue. It survives crashes: quotes"),
            "use-wal-mode-for-the-queue-it-survives-crashes"
        );
        assert_eq!(slug(&"x".repeat(80)).len(), SLUG_MAX);
        for s in ["a/b", "..", ".", "x..y", "Ünïcödé ✓ 東京"] {
            let sl = slug(s);
            assert!(
                sl.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{sl}"
            );
            assert!(!sl.contains(".."));
        }
    }

    #[test]
    fn odd_projects_get_distinct_safe_folders() {
        assert_eq!(project_folder("windsurf-project"), "windsurf-project");
        assert_eq!(project_folder("SecondBrain"), "SecondBrain");
        let a = project_folder("a/b:c");
        assert!(a.starts_with("a-b-c-"), "{a}");
        assert_ne!(project_folder("a/b:c"), project_folder("a:b/c"));
        assert!(project_folder("..").starts_with("project-"));
        // Case-only differences never share a folder on a case-insensitive disk.
        let f = folders_for(["Foo", "foo", "FOO", "Bar"]);
        assert_eq!(f["foo"], "foo");
        assert_eq!(f["Bar"], "Bar");
        assert!(
            f["Foo"].starts_with("foo-") && f["FOO"].starts_with("foo-"),
            "{f:?}"
        );
        assert_ne!(f["Foo"], f["FOO"]);
        let lower: HashSet<String> = f.values().map(|v| v.to_lowercase()).collect();
        assert_eq!(lower.len(), 4);
    }

    #[test]
    fn a_leading_tilde_is_home() {
        if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            assert_eq!(
                expand_home(Path::new("~/Vault")),
                PathBuf::from(home).join("Vault")
            );
        }
        assert_eq!(expand_home(Path::new("/v/~x")), PathBuf::from("/v/~x"));
        assert_eq!(expand_home(Path::new("~user/v")), PathBuf::from("~user/v"));
    }

    #[test]
    fn yaml_quoting_round_trips() {
        for s in [
            "plain",
            "with \"quotes\" and \\ backslash",
            "new\nline\ttab",
            "colon: hash # [bracket]",
            "\u{2028}\u{1}",
        ] {
            let q = yaml_quote(s);
            assert!(!q.contains('\n'));
            assert_eq!(yaml_scalar(&q), s);
        }
    }
}
