//! Running external programs with errors that say which command failed and what it printed.

use std::process::{Command, Output, Stdio};

/// The command line, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion with no stdin, capturing its output. Err only when it could
/// not be started.
pub fn output(cmd: &mut Command) -> Result<Output, String> {
    cmd.stdin(Stdio::null());
    cmd.output()
        .map_err(|e| format!("cannot run `{}`: {e}", describe(cmd)))
}

/// Runs `cmd` and requires exit status 0; returns its stdout.
pub fn run(cmd: &mut Command) -> Result<String, String> {
    let out = output(cmd)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{}` failed ({}):\n--- stdout ---\n{}--- stderr ---\n{}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// [`run`], panicking with the command and its output on failure.
pub fn must(cmd: &mut Command) -> String {
    run(cmd).unwrap_or_else(|e| panic!("{e}"))
}

/// `program args...` as a [`Command`].
pub fn command<S: AsRef<std::ffi::OsStr>>(program: &str, args: &[S]) -> Command {
    let mut c = Command::new(program);
    c.args(args);
    c
}

/// Whether `program` is found in `PATH` (or is an existing path).
pub fn in_path(program: &str) -> bool {
    if program.contains('/') {
        return std::path::Path::new(program).exists();
    }
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

/// Both output streams, for messages.
pub fn combined(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
