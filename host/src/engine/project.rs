//! Which project (Mem0 `user_id`) a folder belongs to: the one rule that
//! the hooks (recall at session start, capture) and the saves from Claude
//! Code that name no project share, so that what is saved in a folder is
//! what is recalled there.
//!
//! For a folder, in order:
//!
//! 1. the config's `[projects]` table: the longest folder of it that is the
//!    folder or one of its parents (a leading `~` is HOME);
//! 2. its git repository: the name of the repository's main folder (a
//!    linked worktree counts as its main repository, so every worktree of a
//!    repository is one project). A repository at HOME itself (a dotfiles
//!    repository) is not taken: every folder under HOME would be in it;
//! 3. else `default_project`.
//!
//! A name is made fit for Mem0 (no whitespace, no control characters, at
//! most 256 bytes). This module reads the folder's `.git` (a few small
//! files, no `git` process: a session start waits for it); it writes
//! nothing.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use crate::engine::config::Config;

/// How the project was chosen, for the logs and the tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// A folder of the config's `[projects]` table.
    Configured,
    /// The folder's git repository.
    Git,
    /// `default_project`: no folder, or none of the above.
    Default,
}

/// A folder's project, and what recall asks about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectOf {
    pub project: String,
    pub why: Why,
    /// The folder's own name (its last component).
    pub folder: Option<String>,
    /// The branch checked out in the folder's git repository, if any.
    pub branch: Option<String>,
}

/// The longest id Mem0 takes here (the store's `MAX_ID_LEN`).
const MAX_NAME: usize = 256;

/// How many parent folders are searched for a `.git`: deeper than any real
/// tree, and a bound on a pathological one.
const MAX_DEPTH: usize = 64;

/// The project of `dir` (None: no folder is known, `default_project`).
/// `home` is HOME, for `~` in the table and the dotfiles rule.
pub fn project_of(config: &Config, dir: Option<&Path>, home: Option<&Path>) -> ProjectOf {
    let default = || ProjectOf {
        project: config.default_project.clone(),
        why: Why::Default,
        folder: None,
        branch: None,
    };
    let Some(dir) = dir.filter(|d| d.is_absolute()) else {
        return default();
    };
    let dir = normalize(dir);
    let folder = dir
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .filter(|f| !f.is_empty());
    let repo = find_repo(&dir, home);
    let branch = repo.as_ref().and_then(|r| branch(&r.git_dir));
    if let Some(name) = configured(&config.projects, &dir, home) {
        return ProjectOf {
            project: name,
            why: Why::Configured,
            folder,
            branch,
        };
    }
    if let Some(name) = repo.as_ref().and_then(|r| fit(&r.name)) {
        return ProjectOf {
            project: name,
            why: Why::Git,
            folder,
            branch,
        };
    }
    ProjectOf {
        folder,
        branch,
        ..default()
    }
}

/// A name Mem0 takes: whitespace runs become `-`, control characters go,
/// at most 256 bytes. None when nothing is left.
pub fn fit(name: &str) -> Option<String> {
    let mut out = String::new();
    for word in name.split_whitespace() {
        if !out.is_empty() {
            out.push('-');
        }
        out.extend(word.chars().filter(|c| !c.is_control()));
    }
    while out.len() > MAX_NAME {
        out.pop();
    }
    let out = out.trim_matches('-').to_string();
    (!out.is_empty()).then_some(out)
}

/// `.` and `..` resolved lexically (a hook's `cwd` is absolute already;
/// symlinks are left as they are: the table is matched as written).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn expand(folder: &str, home: Option<&Path>) -> Option<PathBuf> {
    let p = if folder == "~" {
        home?.to_path_buf()
    } else if let Some(rest) = folder.strip_prefix("~/") {
        home?.join(rest)
    } else {
        PathBuf::from(folder)
    };
    p.is_absolute().then(|| normalize(&p))
}

/// The `[projects]` entry of the longest folder containing `dir`.
fn configured(table: &BTreeMap<String, String>, dir: &Path, home: Option<&Path>) -> Option<String> {
    table
        .iter()
        .filter_map(|(folder, name)| Some((expand(folder, home)?, name)))
        .filter(|(folder, _)| dir.starts_with(folder))
        .max_by_key(|(folder, _)| folder.components().count())
        .and_then(|(_, name)| fit(name))
}

/// A git repository found above a folder.
struct Repo {
    /// The name of its main folder.
    name: String,
    /// Where its HEAD is (the worktree's own git dir for a linked worktree).
    git_dir: PathBuf,
}

fn find_repo(dir: &Path, home: Option<&Path>) -> Option<Repo> {
    let mut here = Some(dir);
    for _ in 0..MAX_DEPTH {
        let d = here?;
        let dot_git = d.join(".git");
        if let Ok(meta) = std::fs::symlink_metadata(&dot_git) {
            if home.is_some_and(|h| normalize(h) == d) {
                return None; // A dotfiles repository: not a project.
            }
            return if meta.is_dir() {
                Some(Repo {
                    name: d.file_name()?.to_string_lossy().into_owned(),
                    git_dir: dot_git,
                })
            } else {
                linked(d, &dot_git)
            };
        }
        here = d.parent();
    }
    None
}

/// A `.git` file (`gitdir: PATH`): a linked worktree, whose git dir has a
/// `commondir` naming the main repository's git dir; or a submodule, whose
/// git dir has none (its own folder names it).
fn linked(top: &Path, dot_git: &Path) -> Option<Repo> {
    let text = read_small(dot_git)?;
    let target = text.strip_prefix("gitdir:")?.trim();
    let git_dir = normalize(&top.join(target));
    let name = match read_small(&git_dir.join("commondir")) {
        Some(common) => {
            let common = normalize(&git_dir.join(common.trim()));
            // The main repository's git dir is `<main folder>/.git`.
            if common.file_name().is_some_and(|n| n == ".git") {
                common.parent()?.file_name()?.to_string_lossy().into_owned()
            } else {
                // A bare repository: `name.git` or `name`.
                let n = common.file_name()?.to_string_lossy().into_owned();
                n.strip_suffix(".git").map(str::to_string).unwrap_or(n)
            }
        }
        None => top.file_name()?.to_string_lossy().into_owned(),
    };
    Some(Repo { name, git_dir })
}

/// The branch of HEAD (`ref: refs/heads/NAME`); None when detached.
fn branch(git_dir: &Path) -> Option<String> {
    let head = read_small(&git_dir.join("HEAD"))?;
    head.trim()
        .strip_prefix("ref: refs/heads/")
        .map(str::to_string)
        .filter(|b| !b.is_empty())
}

/// A small file's text (git's pointer files are a line long).
fn read_small(p: &Path) -> Option<String> {
    use std::io::Read;
    let mut s = String::new();
    std::fs::File::open(p)
        .ok()?
        .take(4096)
        .read_to_string(&mut s)
        .ok()?;
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Tmp(PathBuf);
    impl Tmp {
        fn new() -> Self {
            let p = std::env::temp_dir().join(format!(
                "mq-project-{}-{}",
                std::process::id(),
                uuid::Uuid::now_v7()
            ));
            std::fs::create_dir_all(&p).expect("mkdir");
            Self(p)
        }
        fn dir(&self, rel: &str) -> PathBuf {
            let p = self.0.join(rel);
            std::fs::create_dir_all(&p).expect("mkdir");
            p
        }
        fn write(&self, rel: &str, text: &str) {
            let p = self.0.join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
        }
    }
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn config(projects: &[(&str, &str)]) -> Config {
        Config {
            default_project: "fallback".into(),
            projects: projects
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Config::default()
        }
    }

    #[test]
    fn no_folder_or_a_plain_folder_is_the_default_project() {
        let t = Tmp::new();
        let c = config(&[]);
        assert_eq!(project_of(&c, None, None).project, "fallback");
        assert_eq!(
            project_of(&c, Some(Path::new("relative/dir")), None).why,
            Why::Default
        );
        let plain = t.dir("plain/sub");
        let p = project_of(&c, Some(&plain), None);
        assert_eq!((p.project.as_str(), p.why), ("fallback", Why::Default));
        assert_eq!(p.folder.as_deref(), Some("sub"));
    }

    #[test]
    fn a_git_repository_names_the_project_and_gives_the_branch() {
        let t = Tmp::new();
        t.dir("My Repo/.git");
        t.write("My Repo/.git/HEAD", "ref: refs/heads/feature/recall-hook\n");
        let deep = t.dir("My Repo/src/deep");
        let p = project_of(&config(&[]), Some(&deep), None);
        assert_eq!(p.project, "My-Repo");
        assert_eq!(p.why, Why::Git);
        assert_eq!(p.branch.as_deref(), Some("feature/recall-hook"));
        assert_eq!(p.folder.as_deref(), Some("deep"));
        // Detached HEAD: no branch.
        t.write(
            "My Repo/.git/HEAD",
            "0123456789abcdef0123456789abcdef01234567\n",
        );
        assert_eq!(project_of(&config(&[]), Some(&deep), None).branch, None);
    }

    #[test]
    fn a_linked_worktree_is_its_main_repository() {
        let t = Tmp::new();
        t.dir("main/.git/worktrees/wt1");
        t.write("main/.git/worktrees/wt1/commondir", "../..\n");
        t.write(
            "main/.git/worktrees/wt1/HEAD",
            "ref: refs/heads/wt-branch\n",
        );
        let wt = t.dir("elsewhere/wt1");
        t.write(
            "elsewhere/wt1/.git",
            &format!(
                "gitdir: {}\n",
                t.0.join("main/.git/worktrees/wt1").display()
            ),
        );
        let p = project_of(&config(&[]), Some(&wt), None);
        assert_eq!(p.project, "main");
        assert_eq!(p.branch.as_deref(), Some("wt-branch"));
        // A submodule (relative gitdir, no commondir): its own folder.
        t.dir("main/.git/modules/lib");
        t.write("main/.git/modules/lib/HEAD", "ref: refs/heads/x\n");
        let sub = t.dir("main/lib");
        t.write("main/lib/.git", "gitdir: ../.git/modules/lib\n");
        assert_eq!(project_of(&config(&[]), Some(&sub), None).project, "lib");
    }

    #[test]
    fn the_table_wins_and_its_longest_folder_first() {
        let t = Tmp::new();
        t.dir("home/code/acme/.git");
        let api = t.dir("home/code/acme/services/api");
        let home = t.0.join("home");
        let c = config(&[
            ("~/code", "code"),
            ("~/code/acme/services", "acme services"),
            ("/nowhere", "nope"),
        ]);
        let p = project_of(&c, Some(&api), Some(&home));
        assert_eq!(
            (p.project.as_str(), p.why),
            ("acme-services", Why::Configured)
        );
        let acme = t.0.join("home/code/acme");
        assert_eq!(project_of(&c, Some(&acme), Some(&home)).project, "code");
        // A sibling whose name only starts the same is not inside.
        let other = t.dir("home/codebase");
        assert_eq!(project_of(&c, Some(&other), Some(&home)).why, Why::Default);
    }

    #[test]
    fn a_dotfiles_repository_at_home_is_not_a_project() {
        let t = Tmp::new();
        t.dir("home/.git");
        let notes = t.dir("home/notes");
        let home = t.0.join("home");
        let p = project_of(&config(&[]), Some(&notes), Some(&home));
        assert_eq!((p.project.as_str(), p.why), ("fallback", Why::Default));
    }

    #[test]
    fn names_are_made_fit_for_mem0() {
        assert_eq!(fit("  a  b\tc ").as_deref(), Some("a-b-c"));
        assert_eq!(fit("x\u{7}y").as_deref(), Some("xy"));
        assert_eq!(fit(" \t "), None);
        assert_eq!(fit(&"é".repeat(200)).map(|s| s.len()), Some(256));
    }
}
