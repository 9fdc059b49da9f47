//! `mem0-queue install claude-code` / `uninstall claude-code` on the real
//! binary, in a temp HOME holding a `~/.claude.json` with other keys and
//! another MCP server, and a `~/.claude/settings.json` with another hook:
//! the install adds exactly our MCP server and our SessionStart, SessionEnd
//! and PreCompact hooks and keeps the rest (values and key order); a second run writes nothing; every changed
//! file is backed up with its mode; `--dry-run` writes nothing; uninstall
//! gives back the other content.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use mem0_queue_testkit::{
    bin,
    ops::{canonical_bin, ok, run, text},
    sandbox::Sandbox,
};
use serde_json::{Value, json};

const CLAUDE_JSON: &str = r#"{
  "numStartups": 42,
  "theme": "dark",
  "oauthAccount": {
    "emailAddress": "someone@example.com",
    "organizationUuid": "0000"
  },
  "projects": {
    "/home/me/some-project": {
      "allowedTools": [],
      "mcpServers": {}
    }
  },
  "mcpServers": {
    "other": {
      "type": "stdio",
      "command": "other-server",
      "args": [],
      "env": {
        "TOKEN": "keep-me"
      }
    }
  },
  "zLastKey": 1.5
}"#;

const SETTINGS_JSON: &str = r#"{
  "model": "opus",
  "hooks": {
    "SessionEnd": [
      {
        "hooks": [
          {
            "type": "command",
            "command": "echo goodbye"
          }
        ]
      }
    ],
    "PreToolUse": [
      {
        "matcher": "Bash",
        "hooks": [
          {
            "type": "command",
            "command": "check-bash"
          }
        ]
      }
    ]
  }
}
"#;

struct Files {
    config: PathBuf,
    settings: PathBuf,
}

fn setup(home: &Sandbox) -> Files {
    let config = home.home().join(".claude.json");
    let settings = home.home().join(".claude/settings.json");
    std::fs::create_dir_all(settings.parent().expect("parent")).expect("mkdir .claude");
    std::fs::write(&config, CLAUDE_JSON).expect("write .claude.json");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::fs::write(&settings, SETTINGS_JSON).expect("write settings.json");
    std::fs::set_permissions(&settings, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    Files { config, settings }
}

/// Asserts that `config` and `settings` hold the original bytes.
fn assert_originals(config: &Path, settings: &Path) {
    assert_eq!(std::fs::read_to_string(config).expect("read"), CLAUDE_JSON);
    assert_eq!(
        std::fs::read_to_string(settings).expect("read"),
        SETTINGS_JSON
    );
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).expect("read")).expect("valid JSON")
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
}

fn backups(p: &Path) -> Vec<PathBuf> {
    let name = p.file_name().expect("name").to_string_lossy().into_owned();
    let mut v: Vec<PathBuf> = std::fs::read_dir(p.parent().expect("dir"))
        .expect("ls")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|q| {
            q.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{name}.bak.")))
        })
        .collect();
    v.sort();
    v
}

fn without(mut v: Value, path: &[&str]) -> Value {
    let (last, parents) = path.split_last().expect("path");
    let mut cur = &mut v;
    for p in parents {
        cur = cur.get_mut(*p).expect("parent");
    }
    cur.as_object_mut().expect("object").remove(*last);
    v
}

#[test]
fn install_keeps_other_content_is_idempotent_backs_up_and_uninstalls() {
    let home = Sandbox::new(bin!());
    let f = setup(&home);
    let data = home.data_dir().display().to_string();

    // --dry-run: prints the plan and a diff, writes nothing.
    let out = ok(home.ops_command(&["install", "claude-code", "--dry-run"]));
    assert!(out.contains("dry run"), "{out}");
    assert!(out.contains(r#"+    "mem0-queue": {"#), "{out}");
    assert!(out.contains("hook session-end"), "{out}");
    assert_originals(&f.config, &f.settings);
    assert!(backups(&f.config).is_empty() && backups(&f.settings).is_empty());

    // Install.
    let out = ok(home.ops_command(&["install", "claude-code"]));
    assert!(out.contains("registered the MCP server"), "{out}");
    for event in ["SessionStart", "SessionEnd", "PreCompact"] {
        assert!(out.contains(&format!("added the {event} hook")), "{out}");
    }
    assert!(out.contains("Restart Claude Code"), "{out}");

    let config = read_json(&f.config);
    assert_eq!(
        config["mcpServers"]["mem0-queue"],
        json!({"type": "stdio", "command": canonical_bin(bin!()), "args": ["--data-dir", data, "serve"], "env": {}})
    );
    // Everything else is as it was.
    let orig: Value = serde_json::from_str(CLAUDE_JSON).expect("json");
    assert_eq!(without(config.clone(), &["mcpServers", "mem0-queue"]), orig);
    // And in the same order: the file differs from the original only by the
    // added lines.
    let text = std::fs::read_to_string(&f.config).expect("read");
    let keys: Vec<usize> = [
        "numStartups",
        "theme",
        "oauthAccount",
        "projects",
        "mcpServers",
        "zLastKey",
    ]
    .iter()
    .map(|k| text.find(&format!("\"{k}\"")).expect("key kept"))
    .collect();
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "key order changed:\n{text}"
    );
    assert!(
        text.find("\"other\"") < text.find("\"mem0-queue\""),
        "{text}"
    );
    assert_eq!(mode(&f.config), 0o600);

    let settings = read_json(&f.settings);
    let end = settings["hooks"]["SessionEnd"].as_array().expect("array");
    assert_eq!(end.len(), 2, "{settings}");
    assert_eq!(end[0]["hooks"][0]["command"], "echo goodbye");
    assert_eq!(
        end[1],
        json!({"hooks": [{"type": "command", "command": format!("{} --data-dir {data} hook session-end", canonical_bin(bin!())), "timeout": 5}]})
    );
    assert_eq!(
        settings["hooks"]["PreToolUse"],
        serde_json::from_str::<Value>(SETTINGS_JSON).expect("json")["hooks"]["PreToolUse"]
    );
    assert_eq!(settings["model"], "opus");
    assert_eq!(mode(&f.settings), 0o644);

    // One backup of each, holding the original bytes, with its mode.
    let (cb, sb) = (backups(&f.config), backups(&f.settings));
    assert_eq!((cb.len(), sb.len()), (1, 1), "{cb:?} {sb:?}");
    assert_originals(&cb[0], &sb[0]);
    assert_eq!(mode(&cb[0]), 0o600);
    assert_eq!(mode(&sb[0]), 0o644);

    // A second run changes nothing: byte-identical files, no new backup.
    let before = (
        std::fs::read(&f.config).expect("read"),
        std::fs::read(&f.settings).expect("read"),
    );
    let out = ok(home.ops_command(&["install", "claude-code"]));
    assert!(out.contains("nothing to change"), "{out}");
    assert!(out.contains("registered already"), "{out}");
    assert_eq!(std::fs::read(&f.config).expect("read"), before.0);
    assert_eq!(std::fs::read(&f.settings).expect("read"), before.1);
    assert_eq!(
        (backups(&f.config).len(), backups(&f.settings).len()),
        (1, 1)
    );

    // A dry-run uninstall writes nothing either.
    let out = ok(home.ops_command(&["uninstall", "claude-code", "--dry-run"]));
    assert!(out.contains(r#"-    "mem0-queue": {"#), "{out}");
    assert_eq!(std::fs::read(&f.config).expect("read"), before.0);

    // Uninstall: the other content is back, in meaning and order.
    let out = ok(home.ops_command(&["uninstall", "claude-code"]));
    assert!(out.contains("removed the MCP server"), "{out}");
    assert!(out.contains("removed the SessionEnd hook"), "{out}");
    assert_eq!(read_json(&f.config), orig);
    assert_eq!(
        read_json(&f.settings),
        serde_json::from_str::<Value>(SETTINGS_JSON).expect("json")
    );
    assert_originals(&f.config, &f.settings);
    assert_eq!(mode(&f.config), 0o600);

    // Uninstalling again finds nothing to remove.
    let out = ok(home.ops_command(&["uninstall", "claude-code"]));
    assert!(out.contains("nothing to change"), "{out}");
}

#[test]
fn install_into_a_fresh_home_creates_both_files_and_uninstall_empties_them() {
    let home = Sandbox::new(bin!());
    let config = home.home().join(".claude.json");
    let settings = home.home().join(".claude/settings.json");

    ok(home.ops_command(&["install", "claude-code"]));
    assert_eq!(
        read_json(&config)["mcpServers"]["mem0-queue"]["command"],
        Value::String(canonical_bin(bin!()))
    );
    let s = read_json(&settings);
    for (event, args, timeout) in [
        ("SessionStart", "hook session-start", 10),
        ("SessionEnd", "hook session-end", 5),
        ("PreCompact", "hook pre-compact", 30),
    ] {
        let h = &s["hooks"][event][0]["hooks"][0];
        assert_eq!(
            h["command"],
            format!(
                "{} --data-dir {} {args}",
                canonical_bin(bin!()),
                home.data_dir().display()
            ),
            "{s}"
        );
        assert_eq!(h["timeout"], timeout, "{s}");
        assert_eq!(s["hooks"][event].as_array().map(Vec::len), Some(1), "{s}");
    }
    assert_eq!(mode(&config), 0o600);
    assert!(backups(&config).is_empty(), "nothing to back up");

    ok(home.ops_command(&["uninstall", "claude-code"]));
    // An emptied `mcpServers` stays, as Claude Code keeps one; the hook's
    // emptied containers go.
    assert_eq!(read_json(&config), json!({"mcpServers": {}}));
    assert_eq!(read_json(&settings), json!({}));
}

#[test]
fn a_moved_binary_updates_the_entries_in_place_and_keeps_a_user_env() {
    let home = Sandbox::new(bin!());
    let config = home.home().join(".claude.json");
    let settings = home.home().join(".claude/settings.json");
    std::fs::create_dir_all(home.home().join(".claude")).expect("mkdir");
    std::fs::write(
        &config,
        r#"{"mcpServers": {"mem0-queue": {"type": "stdio", "command": "/old/mem0-queue", "args": ["serve"], "env": {"MEM0_API_KEY": "k"}}}}"#,
    )
    .expect("write");
    std::fs::write(
        &settings,
        r#"{"hooks": {"SessionEnd": [{"hooks": [{"type": "command", "command": "/old/mem0-queue hook session-end", "timeout": 5}]}]}}"#,
    )
    .expect("write");

    let out = ok(home.ops_command(&["install", "claude-code"]));
    assert!(out.contains("updated the MCP server"), "{out}");
    assert!(out.contains("updated the SessionEnd hook"), "{out}");
    let c = read_json(&config);
    assert_eq!(
        c["mcpServers"]["mem0-queue"]["command"],
        Value::String(canonical_bin(bin!()))
    );
    assert_eq!(
        c["mcpServers"]["mem0-queue"]["env"],
        json!({"MEM0_API_KEY": "k"})
    );
    let s = read_json(&settings);
    let groups = s["hooks"]["SessionEnd"].as_array().expect("array");
    assert_eq!(groups.len(), 1, "updated in place, not added: {s}");
    assert!(
        groups[0]["hooks"][0]["command"]
            .as_str()
            .expect("command")
            .starts_with(&canonical_bin(bin!()))
    );
}

#[test]
fn a_broken_claude_json_is_left_untouched_with_a_clear_error() {
    let home = Sandbox::new(bin!());
    let config = home.home().join(".claude.json");
    std::fs::write(&config, "{ not json").expect("write");
    let o = run(home.ops_command(&["install", "claude-code"]));
    let (_, err) = text(&o);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        err.contains(".claude.json") && err.contains("not valid JSON"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&config).expect("read"),
        "{ not json"
    );
}

#[test]
fn an_empty_mcp_servers_round_trips_and_a_symlinked_file_stays_a_symlink() {
    let home = Sandbox::new(bin!());
    let dotfiles = home.home().join("dotfiles");
    std::fs::create_dir_all(&dotfiles).expect("mkdir");
    let real = dotfiles.join("claude.json");
    let original = "{\n  \"mcpServers\": {},\n  \"tipsHistory\": {\n    \"x\": 1\n  }\n}\n";
    std::fs::write(&real, original).expect("write");
    let link = home.home().join(".claude.json");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");

    ok(home.ops_command(&["install", "claude-code"]));
    assert!(
        std::fs::symlink_metadata(&link)
            .expect("stat")
            .file_type()
            .is_symlink(),
        "the link was replaced by a file"
    );
    assert_eq!(
        read_json(&real)["mcpServers"]["mem0-queue"]["command"],
        Value::String(canonical_bin(bin!()))
    );
    ok(home.ops_command(&["uninstall", "claude-code"]));
    assert!(
        std::fs::symlink_metadata(&link)
            .expect("stat")
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read_to_string(&real).expect("read"), original);
}

#[test]
fn http_registers_the_daemon_endpoint_with_its_token_and_back() {
    let home = Sandbox::new(bin!());
    let f = setup(&home);
    // A ~/.claude.json readable by others: it is about to hold a secret.
    std::fs::set_permissions(&f.config, std::fs::Permissions::from_mode(0o644)).expect("chmod");

    let out = ok(home.ops_command(&[
        "--set",
        "daemon_port=18767",
        "install",
        "claude-code",
        "--http",
    ]));
    let token_file = home.data_dir().join("daemon.token");
    let token = std::fs::read_to_string(&token_file).expect("the token is made at install");
    let token = token.trim();
    assert_eq!(token.len(), 64, "{token}");
    assert_eq!(mode(&token_file), 0o600);
    assert_eq!(mode(&f.config), 0o600, "narrowed: it holds the token");
    assert!(out.contains("now 0600"), "{out}");
    assert!(out.contains("the token is a secret"), "{out}");
    assert!(out.contains("at http://127.0.0.1:18767/mcp"), "{out}");
    assert!(out.contains("`mem0-queue install daemon`"), "{out}");
    assert!(!out.contains(token), "the token is never printed");
    let v = read_json(&f.config);
    assert_eq!(
        v["mcpServers"]["mem0-queue"],
        json!({
            "type": "http",
            "url": "http://127.0.0.1:18767/mcp",
            "headers": {"Authorization": format!("Bearer {token}")}
        })
    );
    assert_eq!(v["mcpServers"]["other"]["env"]["TOKEN"], "keep-me");

    // Idempotent: the same token, nothing written.
    let before = std::fs::read(&f.config).expect("read");
    let out = ok(home.ops_command(&[
        "--set",
        "daemon_port=18767",
        "install",
        "claude-code",
        "--http",
    ]));
    assert!(out.contains("nothing to change"), "{out}");
    assert_eq!(std::fs::read(&f.config).expect("read"), before);

    // Back to stdio: the http keys go, the command comes.
    ok(home.ops_command(&["install", "claude-code"]));
    let entry = read_json(&f.config)["mcpServers"]["mem0-queue"].clone();
    assert_eq!(entry["type"], "stdio", "{entry}");
    assert!(
        entry.get("url").is_none() && entry.get("headers").is_none(),
        "{entry}"
    );
    assert_eq!(
        entry["args"].as_array().and_then(|a| a.last()),
        Some(&json!("serve"))
    );

    ok(home.ops_command(&["uninstall", "claude-code"]));
    assert!(
        read_json(&f.config)["mcpServers"]
            .get("mem0-queue")
            .is_none()
    );
}
