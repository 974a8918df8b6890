//! `calc repl`, driven through piped standard input (rustyline reads plain lines when standard
//! input is not a terminal), with and without `--watch`.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use calc_tests::{calc_binary, examples_dir, library_file_name, scratch_dir};

/// The longest any single expected output may take to appear.
const TIMEOUT: Duration = Duration::from_secs(10);

fn repl_command(plugin_dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(calc_binary());
    cmd.arg("repl")
        .args(extra)
        .arg("--plugin-dir")
        .arg(plugin_dir)
        .env_remove("CALC_PLUGIN_PATH")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs `calc repl` on the example plugins with `input` piped in; returns (status, stdout,
/// stderr).
fn repl(extra: &[&str], input: &str) -> (i32, String, String) {
    let mut child = repl_command(examples_dir(), extra)
        .spawn()
        .expect("calc runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn repl_evaluates_with_variables_and_ans() {
    let (code, out, err) = repl(
        &[],
        "x = 3\nx = max(x, 2) * 2\nans + 1\n\n  y=ans^2  \nmax = 5\nmax + max(1, 2)\n:vars\n:quit\n99\n",
    );
    assert_eq!((code, err.as_str()), (0, ""), "{out}");
    assert_eq!(
        out,
        "x = 3\nx = 6\n7\ny = 49\nmax = 5\n7\nans = 7\nmax = 5\nx = 6\ny = 49\n"
    );
}

#[test]
fn repl_reports_errors_like_eval_and_continues() {
    let (code, out, err) = repl(
        &[],
        "2 +* 3\n1 / 0\nz + 1\nmax\n:frobnicate\nans\n6 * 7\nans\n",
    );
    // End of input without :quit is a normal exit.
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "42\n42\n");
    let expected = [
        "calc: error: expected a number, '(' or a function call, found '*' at column 4",
        "  2 +* 3",
        "     ^",
        "calc: error: div (plugin div): division by zero",
        "calc: error: unknown variable 'z' at column 1",
        "  z + 1",
        "  ^",
        "calc: error: expected '(' after function name 'max' at column 4",
        "  max",
        "     ^",
        "calc: error: unknown command ':frobnicate' (:help lists them)",
        "calc: error: unknown variable 'ans' at column 1",
        "  ans",
        "  ^",
    ];
    assert_eq!(err.lines().collect::<Vec<_>>(), expected, "{err}");
}

#[test]
fn repl_lists_plugins_and_help() {
    let (code, out, err) = repl(&["--disable", "sub"], ":plugins\n:help\n:q\n");
    assert_eq!((code, err.as_str()), (0, ""), "{out}");
    let abi = calc_tests::abi();
    for line in [
        format!("add 1.0.0 (ABI {abi}): add (+)"),
        format!("div 1.0.0 (ABI {abi}): div (/), mod (%)"),
        format!("stats 1.0.0 (ABI {abi}): max, min, sum, avg, clamp"),
        "7 loaded, 0 failed, 1 disabled".to_string(),
        "  :reload             reload every plugin file of the plugin directories, drop deleted ones".to_string(),
    ] {
        assert!(out.lines().any(|l| l == line), "no {line:?} in:\n{out}");
    }
    assert!(!out.lines().any(|l| l.starts_with("sub ")), "{out}");
}

#[test]
fn repl_reload_command_reloads_every_file() {
    let (code, out, err) = repl(&[], ":reload\n2 * 3\n");
    assert_eq!((code, err.as_str()), (0, ""), "{out}");
    assert!(
        out.lines()
            .any(|l| l == "reloaded 8 files, 0 failed, 0 removed"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("calc: reloaded mul 1.0.0 -> 1.0.0 in ")),
        "{out}"
    );
    // The expression after the reload is answered after the summary. An old version whose
    // grace period outlasts 50 ms is unloaded by the reclaimer thread, so its "unloaded" line
    // may come after the answer on a loaded machine: only the order of the two is fixed.
    let lines: Vec<&str> = out.lines().collect();
    let summary = lines
        .iter()
        .position(|l| *l == "reloaded 8 files, 0 failed, 0 removed")
        .unwrap();
    assert_eq!(
        lines[summary + 1..]
            .iter()
            .filter(|l| !l.starts_with("calc: unloaded "))
            .collect::<Vec<_>>(),
        [&"6"],
        "{out}"
    );
}

/// A running `calc repl --watch`: its standard output line by line, its standard error as it
/// comes; killed when dropped.
struct Session {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl Session {
    fn start(cmd: &mut Command) -> Session {
        let mut child = cmd.spawn().expect("calc runs");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut stderr_pipe = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Session {
            child,
            stdin,
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits for a line of standard output satisfying `want` (after the ones already consumed).
    fn expect_line(&mut self, what: &str, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if want(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no {what} within {TIMEOUT:?}; stdout:\n{}\nstderr:\n{}",
                    self.seen.join("\n"),
                    self.stderr()
                ),
            }
        }
    }

    /// Waits until standard error contains `needle`.
    fn expect_stderr(&self, needle: &str) {
        let deadline = Instant::now() + TIMEOUT;
        while !self.stderr().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} on stderr within {TIMEOUT:?}:\n{}\nstdout:\n{}",
                self.stderr(),
                self.seen.join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn repl_watch_follows_plugins_added_and_deleted_while_it_runs() {
    let dir = scratch_dir(&format!("repl-watch-{}", std::process::id()));
    let add = library_file_name("add");
    let mul = library_file_name("mul");
    std::fs::copy(examples_dir().join(&add), dir.join(&add)).unwrap();
    let mut s = Session::start(&mut repl_command(&dir, &["--watch"]));

    s.send("1 + 1");
    s.expect_line("result 2", |l| l == "2");

    // Installed the way builders and package managers do: written under a temporary name,
    // renamed into place.
    let temp = dir.join(".libmul.so.partial");
    std::fs::copy(examples_dir().join(&mul), &temp).unwrap();
    std::fs::rename(&temp, dir.join(&mul)).unwrap();
    s.expect_line("the 'loaded mul' event", |l| {
        l.starts_with("calc: loaded mul 1.0.0 from ")
    });
    s.send("2 * 3");
    s.expect_line("result 6", |l| l == "6");

    std::fs::remove_file(dir.join(&mul)).unwrap();
    s.expect_line("the 'removed mul' event", |l| {
        l.starts_with("calc: removed mul (")
    });
    s.send("2 * 3");
    s.expect_stderr("calc: error: unknown operator '*'");
    // The REPL is still alive and evaluating.
    s.send("2 + 5");
    s.expect_line("result 7", |l| l == "7");
    assert!(
        s.seen
            .iter()
            .any(|l| l == "calc: unloaded mul 1.0.0: code unmapped"),
        "{:?}",
        s.seen
    );

    s.send(":quit");
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = s.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "calc repl did not exit after :quit"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "stderr:\n{}", s.stderr());
    // No "skipped" or warning lines: only the expected error.
    assert_eq!(
        s.stderr()
            .lines()
            .filter(|l| l.starts_with("calc:"))
            .count(),
        1,
        "{}",
        s.stderr()
    );
}
