//! A peer process: the test binary re-executed with a role in an environment variable; its
//! test file's `child_process_entry` test dispatches on the role.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The environment variable that carries `role:channel-name` to the child.
pub const ROLE_ENV: &str = "CAPNP_SHM_TEST_ROLE";
const WAIT: Duration = Duration::from_secs(30);
const CHILD_LIMIT: Duration = Duration::from_secs(120);

/// A running peer; killed and reaped on drop so a failing test leaves no process behind.
pub struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    /// The child's stdout lines, read by a thread so every wait for them is bounded.
    lines: mpsc::Receiver<String>,
}

impl Peer {
    pub fn spawn(role: &str, name: &str) -> Peer {
        Peer::spawn_command(Command::new(std::env::current_exe().unwrap()), role, name)
    }

    /// Like [`Peer::spawn`], but the peer runs in a new pid namespace (`unshare --pid
    /// --fork`, as root), where our pids mean nothing, so liveness falls back to the
    /// heartbeat. `None`, after printing one line saying why, where the system refuses to
    /// create the namespace. Killing the peer kills `unshare`, whose child follows
    /// (`--kill-child`).
    pub fn spawn_in_new_pid_namespace(role: &str, name: &str) -> Option<Peer> {
        let unshare = ["--pid", "--fork", "--kill-child"];
        let probe = Command::new("unshare")
            .args(unshare)
            .arg("true")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !probe.as_ref().is_ok_and(|s| s.success()) {
            eprintln!(
                "SKIPPED: cannot create a pid namespace here (unshare --pid --fork: {probe:?})"
            );
            return None;
        }
        let mut command = Command::new("unshare");
        command.args(unshare).arg(std::env::current_exe().unwrap());
        Some(Peer::spawn_command(command, role, name))
    }

    fn spawn_command(mut command: Command, role: &str, name: &str) -> Peer {
        let mut child = command
            .args([
                "--exact",
                "child_process_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ROLE_ENV, format!("{role}:{name}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn peer");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Peer {
            child,
            stdin,
            lines,
        }
    }

    /// Waits (bounded) until the child prints the marker for `token` (see [`say`]).
    pub fn expect_line(&mut self, token: &str) {
        self.expect_value(token);
    }

    /// Waits (bounded) until the child prints the marker for `token`, and returns what
    /// follows it on that line (see [`say_value`]).
    pub fn expect_value(&mut self, token: &str) -> String {
        let marker = marker(token);
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(&marker) => {
                    let at = line.find(&marker).unwrap() + marker.len();
                    return line[at..].trim().to_string();
                }
                Ok(_) => continue,
                Err(e) => panic!("peer did not print {token}: {e:?}"),
            }
        }
    }

    pub fn tell(&mut self, line: &str) {
        writeln!(self.stdin.as_mut().unwrap(), "{line}").unwrap();
    }

    /// Waits (bounded) for the child to exit successfully.
    pub fn finish(mut self) {
        drop(self.stdin.take());
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "peer failed: {status}");
                return;
            }
            assert!(
                start.elapsed() < CHILD_LIMIT,
                "peer did not finish in {CHILD_LIMIT:?}"
            );
            std::thread::sleep(Duration::from_millis(5)); // polling a process exit
        }
    }
}

impl Peer {
    /// Kills the child with SIGKILL now (it is reaped on drop).
    pub fn kill(&mut self) {
        self.child.kill().expect("kill peer");
    }

    /// Kills the child with SIGKILL and reaps it, so its pid and everything the kernel
    /// held for it (descriptors, locks, mappings) are gone when this returns.
    pub fn kill_and_reap(mut self) {
        let _ = self.child.kill();
        self.child.wait().expect("reap peer");
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A marker the parent can find in the child's stdout, whatever libtest prints around it.
pub fn marker(token: &str) -> String {
    format!("<<peer:{token}>>")
}

pub fn say(token: &str) {
    println!("{}", marker(token));
    std::io::stdout().flush().unwrap();
}

/// Prints the marker for `token` followed by `value` (read with [`Peer::expect_value`]).
pub fn say_value(token: &str, value: &str) {
    println!("{} {value}", marker(token));
    std::io::stdout().flush().unwrap();
}

pub fn read_stdin_line() -> String {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    line
}

/// In a peer process, its `(role, channel name)`; `None` in a normal test run.
pub fn role() -> Option<(String, String)> {
    let spec = std::env::var(ROLE_ENV).ok()?;
    let (role, name) = spec.split_once(':').expect("role:name");
    Some((role.to_string(), name.to_string()))
}

impl Peer {
    /// Waits (bounded) for the child to exit, whatever its status, and returns the status.
    pub fn wait_exit(mut self) -> std::process::ExitStatus {
        drop(self.stdin.take());
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < CHILD_LIMIT,
                "peer did not exit in {CHILD_LIMIT:?}"
            );
            std::thread::sleep(Duration::from_millis(5)); // polling a process exit
        }
    }
}
