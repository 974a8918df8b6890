//! Names of the signals that end plugin processes, for messages. The bottom layer: it imports
//! nothing of the host.
#![forbid(unsafe_code)]

/// The name of signal `n`, e.g. `"SIGSEGV"`.
pub fn signal_name(n: i32) -> String {
    match n {
        4 => "SIGILL".into(),
        5 => "SIGTRAP".into(),
        6 => "SIGABRT".into(),
        7 => "SIGBUS".into(),
        8 => "SIGFPE".into(),
        9 => "SIGKILL".into(),
        11 => "SIGSEGV".into(),
        15 => "SIGTERM".into(),
        24 => "SIGXCPU".into(),
        31 => "SIGSYS".into(),
        _ => format!("signal {n}"),
    }
}
