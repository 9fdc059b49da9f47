//! Config precedence through the real binary's `config show --json`: the
//! file < the environment < `--set` / named flags, each value's source
//! reported; a bad config file is a clear error naming the key and the
//! file, exit 78 (EX_CONFIG), and a secret is never printed.

use std::path::PathBuf;

use mem0_queue_testkit::{
    bin,
    ops::{ok, run, text},
    sandbox::Sandbox,
};
use serde_json::Value;

fn write_config(home: &Sandbox, body: &str) -> PathBuf {
    let p = home.home().join(".config/mem0-queue/config.toml");
    std::fs::create_dir_all(p.parent().expect("dir")).expect("mkdir");
    std::fs::write(&p, body).expect("write config");
    p
}

fn show(mut c: std::process::Command) -> Value {
    c.args(["config", "show", "--json"]);
    serde_json::from_str(&ok(c)).expect("JSON")
}

#[test]
fn file_then_env_then_flag() {
    let home = Sandbox::new(bin!());
    let file = write_config(
        &home,
        "concurrency = 2\ninfer = false\napi_url = \"http://127.0.0.1:9\"\napi_key = \"secret-in-file\"\n",
    );
    let file_src = format!("file {}", file.display());

    let v = show(home.ops_command(&[]));
    assert_eq!(v["concurrency"]["value"], 2);
    assert_eq!(v["concurrency"]["source"], Value::String(file_src.clone()));
    assert_eq!(v["infer"]["value"], false);
    assert_eq!(v["add_timeout"]["source"], "default");
    assert_eq!(v["api_key"]["value"], "<redacted>");

    let mut c = home.ops_command(&[]);
    c.env("MEM0_QUEUE_CONCURRENCY", "3")
        .env("MEM0_API_URL", "http://127.0.0.1:10");
    let v = show(c);
    assert_eq!(v["concurrency"]["value"], 3);
    assert_eq!(v["concurrency"]["source"], "env MEM0_QUEUE_CONCURRENCY");
    assert_eq!(v["api_url"]["value"], "http://127.0.0.1:10");
    assert_eq!(
        v["infer"]["source"],
        Value::String(file_src.clone()),
        "untouched keys keep the file"
    );

    let mut c = home.ops_command(&["--set", "concurrency=5", "--data-dir", "/tmp/mq-flag-dir"]);
    c.env("MEM0_QUEUE_CONCURRENCY", "3");
    let v = show(c);
    assert_eq!(v["concurrency"]["value"], 5);
    assert_eq!(v["concurrency"]["source"], "flag");
    assert_eq!(v["data_dir"]["value"], "/tmp/mq-flag-dir");
    assert_eq!(
        v["data_dir"]["source"], "flag",
        "--data-dir beats MEM0_QUEUE_HOME"
    );

    // The text form never shows the key either.
    let out = ok({
        let mut c = home.ops_command(&["config", "show"]);
        c.env("MEM0_API_KEY", "secret-in-env");
        c
    });
    assert!(
        !out.contains("secret-in-file") && !out.contains("secret-in-env"),
        "{out}"
    );
}

#[test]
fn a_bad_file_names_the_key_and_the_file_and_exits_78() {
    for (body, key) in [
        ("concurrency = \"lots\"\n", "concurrency"),
        ("concurency = 2\n", "concurency"),
        ("add_timeout = \"soon\"\n", "add_timeout"),
        ("concurrency = 0\n", "concurrency"),
    ] {
        let home = Sandbox::new(bin!());
        let file = write_config(&home, body);
        let o = run(home.ops_command(&["config", "show"]));
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(78), "{body}: {out}{err}");
        assert!(err.contains(key), "{body}: the error names the key: {err}");
        assert!(
            err.contains(&file.display().to_string()),
            "{body}: the error names the file: {err}"
        );
        // Every command refuses a bad config the same way.
        let o = run(home.ops_command(&["status", "--no-probe"]));
        assert_eq!(o.status.code(), Some(78), "{body}");
    }

    // Not TOML at all.
    let home = Sandbox::new(bin!());
    let file = write_config(&home, "this is = = not toml\n");
    let o = run(home.ops_command(&["config", "show"]));
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(78), "{err}");
    assert!(
        err.contains(&file.display().to_string()) && err.contains("TOML"),
        "{err}"
    );

    // A bad env value names the variable.
    let home = Sandbox::new(bin!());
    let mut c = home.ops_command(&["config", "show"]);
    c.env("MEM0_QUEUE_INFER", "maybe");
    let o = run(c);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(78), "{err}");
    assert!(
        err.contains("infer") && err.contains("MEM0_QUEUE_INFER"),
        "{err}"
    );
}
