//! What the command's tests observe of processes through `/proc`, and how they wait for one
//! to end, written once. Each test file is a crate of its own and uses part of it.

#![allow(dead_code, reason = "each test crate uses a part of the support")]

/// Every process as (pid, parent pid, state letter: `Z` for a zombie).
pub(crate) fn processes() -> impl Iterator<Item = (u32, u32, char)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let mut rest = stat[stat.rfind(')')? + 1..].split_whitespace();
            let state = rest.next()?.chars().next()?;
            let ppid = rest.next()?.parse().ok()?;
            Some((pid, ppid, state))
        })
}

/// A process's state letter, or `None` once it is gone altogether.
pub(crate) fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

/// Whether `pid` no longer runs: gone, or a zombie waiting to be reaped.
pub(crate) fn gone(pid: u32) -> bool {
    matches!(state(pid), None | Some('Z'))
}

/// The live processes (zombies aside) whose environment holds `VAR=value` (`var_value`).
pub(crate) fn tagged(var_value: &str) -> Vec<u32> {
    processes()
        .filter(|&(pid, _, state)| {
            state != 'Z'
                && std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
                    env.split(|&b| b == 0)
                        .any(|var| var == var_value.as_bytes())
                })
        })
        .map(|(pid, _, _)| pid)
        .collect()
}

/// Everything the child wrote, once it has exited. Its output is read as it comes (a child
/// blocked on a full pipe would never exit); it is killed, and the test fails, if it takes
/// longer than `guard`.
pub(crate) fn wait_output(
    child: std::process::Child,
    guard: std::time::Duration,
) -> std::process::Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(guard) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            // Not reaped yet (the waiting thread still waits): the pid is still the child's.
            let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            panic!("process {pid:?} did not exit within {guard:?}");
        }
    }
}

/// The first line a bridge prints, `{"event":"listening",…}`, read byte by byte from its
/// standard output (so that nothing after it is taken from the pipe), and checked to be one.
pub(crate) fn listening(child: &mut std::process::Child) -> serde_json::Value {
    use std::io::Read;
    let stdout = child.stdout.as_mut().expect("the bridge's stdout is piped");
    let mut line = Vec::new();
    let mut byte = [0];
    while stdout.read(&mut byte).expect("the bridge's stdout") == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    let listening: serde_json::Value = serde_json::from_slice(&line)
        .unwrap_or_else(|err| panic!("{err}: {:?}", String::from_utf8_lossy(&line)));
    assert_eq!(listening["event"], "listening", "{listening}");
    listening
}
