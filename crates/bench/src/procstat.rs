//! CPU time and memory of a process, read from `/proc` (Linux only).
//!
//! CPU is `utime + stime` of the whole thread group from `/proc/<pid>/stat`;
//! memory is `VmRSS` (now) and `VmHWM` (the peak so far) from
//! `/proc/<pid>/status`.

use std::io;
use std::path::PathBuf;

/// Kernel clock ticks per second in `/proc/<pid>/stat` (`USER_HZ`). It is 100
/// on every Linux architecture this runs on; reading `sysconf(_SC_CLK_TCK)`
/// would need `unsafe`, which the workspace forbids.
const USER_HZ: f64 = 100.0;

/// One reading of a process's resource use.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// User plus system CPU time since the process started.
    pub cpu_seconds: f64,
    /// Resident memory now.
    pub rss_bytes: u64,
    /// The highest resident memory so far.
    pub peak_rss_bytes: u64,
}

/// A process to read: a pid, or this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    Pid(u32),
    Current,
}

impl Process {
    fn dir(self) -> PathBuf {
        match self {
            Process::Pid(pid) => PathBuf::from(format!("/proc/{pid}")),
            Process::Current => PathBuf::from("/proc/self"),
        }
    }

    pub fn sample(self) -> io::Result<Sample> {
        let dir = self.dir();
        let stat = std::fs::read_to_string(dir.join("stat"))?;
        let status = std::fs::read_to_string(dir.join("status"))?;
        Ok(Sample {
            cpu_seconds: parse_cpu_seconds(&stat)?,
            rss_bytes: status_kib(&status, "VmRSS:")? * 1024,
            peak_rss_bytes: status_kib(&status, "VmHWM:")? * 1024,
        })
    }

    /// Open file descriptors (connections, database files, listeners).
    pub fn open_files(self) -> io::Result<usize> {
        Ok(std::fs::read_dir(self.dir().join("fd"))?.count())
    }

    /// The soft limit on open files, from `/proc/<pid>/limits`.
    pub fn open_files_limit(self) -> io::Result<u64> {
        let limits = std::fs::read_to_string(self.dir().join("limits"))?;
        limits
            .lines()
            .find_map(|l| l.strip_prefix("Max open files"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|soft| soft.parse().ok())
            .ok_or_else(|| invalid("no \"Max open files\" line in /proc/<pid>/limits"))
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// `utime` and `stime` are fields 14 and 15 of `stat`; the command name
/// (field 2) may contain spaces and parentheses, so count from its last `)`.
fn parse_cpu_seconds(stat: &str) -> io::Result<f64> {
    let after_name = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(|| invalid("/proc/<pid>/stat without a command name"))?;
    // After the name come field 3 (state) onwards: utime is the 12th of those.
    let mut fields = after_name.split_whitespace().skip(11);
    let mut ticks = |name: &str| -> io::Result<u64> {
        fields
            .next()
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| invalid(&format!("/proc/<pid>/stat has no {name} field")))
    };
    let utime = ticks("utime")?;
    let stime = ticks("stime")?;
    Ok((utime + stime) as f64 / USER_HZ)
}

fn status_kib(status: &str, key: &str) -> io::Result<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .ok_or_else(|| invalid(&format!("no {key} line in /proc/<pid>/status")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_seconds_skip_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (tokio (x) y) S 1 4242 4242 0 -1 4194560 3093 0 0 0 250 75 0 0 20 0 3 0";
        assert_eq!(parse_cpu_seconds(stat).unwrap(), 3.25);
    }

    #[test]
    fn status_values_are_kibibytes() {
        let status = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(status_kib(status, "VmRSS:").unwrap(), 1024);
        assert_eq!(status_kib(status, "VmHWM:").unwrap(), 2048);
        assert!(status_kib(status, "VmSwap:").is_err());
    }

    #[test]
    fn this_process_can_be_read() {
        let s = Process::Current.sample().unwrap();
        assert!(s.rss_bytes > 0 && s.peak_rss_bytes >= s.rss_bytes);
        assert!(Process::Current.open_files().unwrap() > 0);
        assert!(Process::Current.open_files_limit().unwrap() > 0);
    }
}
