//! Runs the real ntc-templates TextFSM templates (Python `textfsm` + `ntc_templates`
//! from PyPI, installed by `netns/install-deps.sh` into [`VENV`]) on our `show`
//! output, the way Netmiko's `use_textfsm=True` does.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

/// The Python virtualenv of the lab's PyPI tools (textfsm, ntc-templates, netmiko).
pub const VENV: &str = "/opt/headend-lab-py";

/// The venv's Python, or `$HEADEND_LAB_PY`.
pub fn python() -> PathBuf {
    std::env::var_os("HEADEND_LAB_PY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(VENV).join("bin/python"))
}

/// Why the PyPI tools cannot run here, if they cannot.
pub fn unavailable_reason() -> Option<String> {
    let ok = Command::new(python())
        .args(["-c", "import textfsm, ntc_templates, netmiko"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    (!ok).then(|| {
        format!(
            "{} cannot import textfsm, ntc_templates and netmiko (run netns/install-deps.sh)",
            python().display()
        )
    })
}

/// True when the tools can run; otherwise prints `SKIP test: reason` and returns
/// false, or panics under `E2E_REQUIRED=1`.
pub fn available() -> bool {
    let Some(reason) = unavailable_reason() else {
        return true;
    };
    let test = std::thread::current().name().unwrap_or("?").to_owned();
    if crate::lab::required() {
        panic!("E2E_REQUIRED=1 but {test} cannot run: {reason}");
    }
    eprintln!("SKIP {test}: {reason}");
    false
}

const PARSE: &str = r#"
import json, os, sys
import textfsm, ntc_templates
path = os.path.join(os.path.dirname(ntc_templates.__file__), "templates", sys.argv[1] + ".textfsm")
with open(path) as f:
    t = textfsm.TextFSM(f)
rows = t.ParseText(sys.stdin.read())
print(json.dumps([dict(zip(t.header, r)) for r in rows]))
"#;

/// Parses `text` with ntc-templates' `template` (e.g.
/// `cisco_asa_show_vpn-sessiondb_anyconnect`): one JSON object per record, keys as
/// the template names them. Panics with the template's error and the text when
/// the template rejects it.
pub fn parse(template: &str, text: &str) -> Vec<serde_json::Map<String, Value>> {
    let mut child = Command::new(python())
        .args(["-c", PARSE, template])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", python().display()));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to python");
    let out = child.wait_with_output().expect("python output");
    assert!(
        out.status.success(),
        "template {template} rejects our output ({}):\n{}\n--- text ---\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("python printed no JSON ({e}): {:?}", out.stdout));
    rows.into_iter()
        .map(|r| match r {
            Value::Object(m) => m,
            other => panic!("row {other:?} is not an object"),
        })
        .collect()
}

/// Field `key` of a parsed row as a string (lists are joined with spaces).
pub fn get(row: &serde_json::Map<String, Value>, key: &str) -> String {
    match row.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().unwrap_or_default())
            .collect::<Vec<_>>()
            .join(" "),
        other => panic!("no string {key:?} in {row:?} ({other:?})"),
    }
}
