//! Small helpers shared by the scenarios: process statistics from /proc,
//! percentiles, temporary directories, argument parsing.

use std::path::{Path, PathBuf};

/// CPU time (user + system) a process has used so far, from /proc/PID/stat.
pub fn cpu_seconds(pid: u32) -> f64 {
    stat_cpu_seconds(&format!("/proc/{pid}/stat"))
}

/// The CPU time of the process's main thread alone: where tidemark and the
/// echo baseline both run their connection (`block_on`), so what bounds a
/// single connection's throughput.
pub fn main_thread_cpu_seconds(pid: u32) -> f64 {
    stat_cpu_seconds(&format!("/proc/{pid}/task/{pid}/stat"))
}

fn stat_cpu_seconds(path: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(path) else {
        return f64::NAN;
    };
    // Fields after the command name (which may contain spaces) start after ')'.
    let rest = &stat[stat.rfind(')').map(|i| i + 2).unwrap_or(0)..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the full line: 11 and 12 here.
    let ticks: f64 = f
        .get(11)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(f64::NAN)
        + f.get(12)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN);
    ticks / clock_ticks()
}

fn clock_ticks() -> f64 {
    // sysconf(_SC_CLK_TCK) is 100 on every Linux we run on; avoid a libc dep.
    100.0
}

/// A `VmXXX:` field of /proc/PID/status, in KiB.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return 0;
    };
    for line in s.lines() {
        if let Some(v) = line.strip_prefix(field) {
            return v
                .trim_start_matches(':')
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        }
    }
    0
}

pub fn peak_rss_mib(pid: u32) -> f64 {
    status_kib(pid, "VmHWM") as f64 / 1024.0
}

pub fn rss_mib(pid: u32) -> f64 {
    status_kib(pid, "VmRSS") as f64 / 1024.0
}

/// The p-th percentile (0..=100) of sorted values.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let base = std::env::var_os("TIDEMARK_BENCH_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let p = base.join(format!(
            "tidemark-bench-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("TIDEMARK_BENCH_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Blocks actually allocated under `dir` (what `du` reports), in bytes.
pub fn dir_allocated(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let Ok(md) = e.metadata() else { continue };
            if md.is_dir() {
                total += dir_allocated(&e.path());
            } else {
                total += md.blocks() * 512;
            }
        }
    }
    total
}

/// `--name value` options after the scenario name.
pub struct Args {
    pairs: Vec<(String, String)>,
}

impl Args {
    pub fn parse(raw: &[String]) -> Result<Args, String> {
        let mut pairs = Vec::new();
        let mut it = raw.iter();
        while let Some(k) = it.next() {
            let Some(name) = k.strip_prefix("--") else {
                return Err(format!("unexpected argument {k:?}"));
            };
            let v = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
            pairs.push((name.to_owned(), v.clone()));
        }
        Ok(Args { pairs })
    }

    pub fn get<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| {
                v.parse().unwrap_or_else(|_| {
                    eprintln!("tidemark-bench: bad value {v:?} for --{name}");
                    std::process::exit(2)
                })
            })
            .unwrap_or(default)
    }

    pub fn list<T>(&self, name: &str, default: &[T]) -> Vec<T>
    where
        T: std::str::FromStr + Clone,
    {
        match self.pairs.iter().rev().find(|(k, _)| k == name) {
            None => default.to_vec(),
            Some((_, v)) => v
                .split(',')
                .map(|x| {
                    x.trim().parse().unwrap_or_else(|_| {
                        eprintln!("tidemark-bench: bad value {x:?} in --{name}");
                        std::process::exit(2)
                    })
                })
                .collect(),
        }
    }
}

/// The directory holding this executable (target/release), where the
/// `tidemark` binary is expected too.
pub fn sibling_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent().unwrap().join(name)
}

/// The CPU time this thread has used so far, in ns (Linux's
/// `CLOCK_THREAD_CPUTIME_ID`): a step's own cost without the time another
/// process held the core, which on a shared machine is what a wall-clock
/// tail mostly measures. 0 if the clock cannot be read.
pub fn thread_cpu_ns() -> u64 {
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }
    unsafe extern "C" {
        fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec (two 64-bit fields on the
    // 64-bit Linux targets tidemark builds for) through the pointer.
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
