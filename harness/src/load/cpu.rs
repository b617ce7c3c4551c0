//! The generator's own CPU use, from /proc: on a small machine every CPU-second the generator
//! burns is taken from the system under test, so a report shows it next to the results.

use serde::Serialize;

/// A reading of this process's and the machine's CPU counters (clock ticks).
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    process_ticks: u64,
    machine_total_ticks: u64,
    machine_idle_ticks: u64,
}

/// CPU use between two samples.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct CpuUse {
    /// User + system CPU-seconds this process used.
    pub cpu_seconds: f64,
    /// `cpu_seconds` over all the machine's CPU time in the window (1.0 = every core, all
    /// the time).
    pub share_of_machine: f64,
    /// The whole machine's busy share in the window (every process, not only ours).
    pub machine_busy: f64,
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// utime + stime of this process, from /proc/self/stat (fields 14 and 15).
fn process_ticks() -> Option<u64> {
    ticks_of("/proc/self/stat")
}

/// A process's fields of /proc/PID/stat from field 3 (state) on: field n is at index n - 3.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    // The command name may hold spaces; fields are counted after its closing parenthesis.
    Some(stat.rsplit_once(')')?.1.split_whitespace().collect())
}

fn ticks_of(stat_path: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
    let fields = stat_fields(&stat)?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The processes of a process group, now (a component and what it started: kc.sh and its JVM).
pub fn process_group_members(group: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| stat_fields(&stat)?.get(2)?.parse::<u32>().ok())
                == Some(group)
        })
        .collect()
}

/// CPU-seconds the processes have used so far (user + system, every thread); a process that
/// has ended counts nothing.
pub fn cpu_seconds_of(pids: &[u32]) -> f64 {
    let ticks: u64 = pids
        .iter()
        .filter_map(|pid| ticks_of(&format!("/proc/{pid}/stat")))
        .sum();
    ticks as f64 / clock_ticks_per_second()
}

/// The machine's CPU-seconds so far, all cores (busy and idle).
pub fn machine_cpu_seconds() -> f64 {
    machine_ticks().map_or(0.0, |(total, _)| total as f64 / clock_ticks_per_second())
}

/// (total, idle + iowait) ticks of all CPUs, from the first line of /proc/stat.
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal [guest guest_nice, already in user/nice]
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    Some((total, idle))
}

impl CpuSample {
    /// Reads the counters now; zeros where /proc is not available (the report then shows 0).
    pub fn now() -> Self {
        let (machine_total_ticks, machine_idle_ticks) = machine_ticks().unwrap_or((0, 0));
        Self {
            process_ticks: process_ticks().unwrap_or(0),
            machine_total_ticks,
            machine_idle_ticks,
        }
    }

    pub fn until(&self, later: &CpuSample) -> CpuUse {
        let per_second = clock_ticks_per_second();
        let process = later.process_ticks.saturating_sub(self.process_ticks) as f64;
        let total = later
            .machine_total_ticks
            .saturating_sub(self.machine_total_ticks) as f64;
        let idle = later
            .machine_idle_ticks
            .saturating_sub(self.machine_idle_ticks) as f64;
        let share = |part: f64| if total > 0.0 { part / total } else { 0.0 };
        CpuUse {
            cpu_seconds: process / per_second,
            // The kernel accounts a process's time per thread, exactly, and rounds it to ticks
            // when read; the machine's counters advance a tick per CPU at a time. A process
            // that keeps every core busy can therefore read a few ticks above the machine's
            // total over a short window: it used the whole machine, not more.
            share_of_machine: share(process).min(1.0),
            machine_busy: share(total - idle),
        }
    }
}

/// This process's peak resident memory (VmHWM) in KiB.
pub fn peak_resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The machine, as noted next to load figures.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MachineInfo {
    pub cpus: usize,
    pub cpu_model: String,
}

impl MachineInfo {
    pub fn detect() -> Self {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, model)| model.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        Self {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burning_cpu_shows_up_in_the_process_counters() {
        let before = CpuSample::now();
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed().as_millis() < 300 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let used = before.until(&CpuSample::now());
        assert!(used.cpu_seconds > 0.1, "{used:?}");
        assert!(used.share_of_machine > 0.0 && used.share_of_machine <= 1.0);
        assert!(peak_resident_kib() > 0);
    }
}
