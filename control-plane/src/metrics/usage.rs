//! What the control plane uses of the machine, for the memory and CPU
//! pressure alerts: its own process (`/proc/self`), and its container's
//! cgroup (v2 at `/sys/fs/cgroup`, else v1's `memory` and `cpu,cpuacct`
//! hierarchies), which also holds the stdio servers it runs
//! and whose memory limit is where the kernel's OOM killer acts. The
//! parsers are pure; [`read`] is the thin part that opens the files.

use std::path::Path;

/// One reading; a figure the system does not give is `None` and is left
/// out of the page.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Usage {
    pub resident_bytes: Option<u64>,
    pub cpu_seconds: Option<f64>,
    /// The cgroup's working set (the control plane and its children): its
    /// memory in use less the page cache the kernel can take back
    /// (`inactive_file`), as cAdvisor's `container_memory_working_set_bytes`.
    /// Files read lately would otherwise make a quiet container look full.
    pub cgroup_memory_bytes: Option<u64>,
    /// Its memory limit; `None` when there is none (`max`).
    pub cgroup_memory_limit_bytes: Option<u64>,
    pub cgroup_cpu_seconds: Option<f64>,
    /// Its CPU limit in cores (quota / period); `None` when there is none.
    pub cgroup_cpu_limit_cores: Option<f64>,
}

/// User and system CPU seconds from `/proc/self/stat` (fields 14 and 15,
/// after the command name, which may hold spaces and parentheses).
pub fn proc_cpu_seconds(stat: &str, ticks_per_second: u64) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let (utime, stime): (u64, u64) = (fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?);
    (ticks_per_second > 0).then(|| (utime + stime) as f64 / ticks_per_second as f64)
}

/// Resident bytes from `/proc/self/statm` (its second field, in pages).
pub fn proc_resident_bytes(statm: &str, page_size: u64) -> Option<u64> {
    statm.split_whitespace().nth(1)?.parse::<u64>().ok().map(|pages| pages * page_size)
}

/// Memory in use less `memory.stat`'s `<key>` (`inactive_file` in v2,
/// `total_inactive_file` in v1); the use alone when the stat is missing.
pub fn working_set(current: &str, stat: Option<&str>, key: &str) -> Option<u64> {
    let current: u64 = current.trim().parse().ok()?;
    let inactive =
        stat.and_then(|s| s.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse::<u64>().ok())).unwrap_or(0);
    Some(current.saturating_sub(inactive))
}

/// `memory.max`: a byte count, or `max` for none.
pub fn memory_limit(max: &str) -> Option<u64> {
    max.trim().parse().ok()
}

/// `cpu.max`: `<quota> <period>` in microseconds, or `max <period>`.
pub fn cpu_limit_cores(max: &str) -> Option<f64> {
    let mut parts = max.split_whitespace();
    let quota: f64 = parts.next()?.parse().ok()?;
    let period: f64 = parts.next()?.parse().ok()?;
    (period > 0.0).then(|| quota / period)
}

/// `cpu.stat`'s `usage_usec`, in seconds.
pub fn cgroup_cpu_seconds(stat: &str) -> Option<f64> {
    stat.lines().find_map(|l| l.strip_prefix("usage_usec ")).and_then(|v| v.trim().parse::<u64>().ok()).map(|us| us as f64 / 1e6)
}

/// cgroup v1's `memory.limit_in_bytes`: a huge number (a page short of
/// 2^63) when there is none.
pub fn v1_memory_limit(limit: &str) -> Option<u64> {
    limit.trim().parse::<u64>().ok().filter(|l| *l < 1 << 62)
}

/// cgroup v1's `cpu.cfs_quota_us` (-1: none) over `cpu.cfs_period_us`.
pub fn v1_cpu_limit_cores(quota: &str, period: &str) -> Option<f64> {
    let quota: i64 = quota.trim().parse().ok()?;
    let period: f64 = period.trim().parse().ok()?;
    (quota > 0 && period > 0.0).then(|| quota as f64 / period)
}

/// Reads the figures now.
pub fn read() -> Usage {
    let text = |path: &str| std::fs::read_to_string(Path::new(path)).ok();
    // SAFETY: sysconf reads a constant of the system; it has no preconditions.
    let (ticks, page) = unsafe { (libc::sysconf(libc::_SC_CLK_TCK), libc::sysconf(libc::_SC_PAGESIZE)) };
    let cgroup = |file: &str| text(&format!("/sys/fs/cgroup/{file}"));
    let mut usage = Usage {
        resident_bytes: text("/proc/self/statm").and_then(|s| proc_resident_bytes(&s, u64::try_from(page).unwrap_or(4096))),
        cpu_seconds: text("/proc/self/stat").and_then(|s| proc_cpu_seconds(&s, u64::try_from(ticks).unwrap_or(100))),
        ..Usage::default()
    };
    if let Some(current) = cgroup("memory.current") {
        usage.cgroup_memory_bytes = working_set(&current, cgroup("memory.stat").as_deref(), "inactive_file");
        usage.cgroup_memory_limit_bytes = cgroup("memory.max").as_deref().and_then(memory_limit);
        usage.cgroup_cpu_seconds = cgroup("cpu.stat").as_deref().and_then(cgroup_cpu_seconds);
        usage.cgroup_cpu_limit_cores = cgroup("cpu.max").as_deref().and_then(cpu_limit_cores);
    } else {
        usage.cgroup_memory_bytes = cgroup("memory/memory.usage_in_bytes")
            .and_then(|current| working_set(&current, cgroup("memory/memory.stat").as_deref(), "total_inactive_file"));
        usage.cgroup_memory_limit_bytes = cgroup("memory/memory.limit_in_bytes").as_deref().and_then(v1_memory_limit);
        usage.cgroup_cpu_seconds = cgroup("cpuacct/cpuacct.usage").and_then(|s| s.trim().parse::<u64>().ok()).map(|ns| ns as f64 / 1e9);
        usage.cgroup_cpu_limit_cores =
            cgroup("cpu/cpu.cfs_quota_us").zip(cgroup("cpu/cpu.cfs_period_us")).and_then(|(q, p)| v1_cpu_limit_cores(&q, &p));
    }
    usage
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_proc_files_are_read() {
        let stat = "4242 (mcp gateway (x)) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 8 0 12345 1000000 2000";
        assert_eq!(proc_cpu_seconds(stat, 100), Some(3.0));
        assert_eq!(proc_cpu_seconds("garbage", 100), None);
        assert_eq!(proc_resident_bytes("5000 1200 300 10 0 900 0", 4096), Some(1200 * 4096));
    }

    #[test]
    fn the_working_set_leaves_out_the_inactive_page_cache() {
        let v2 = "anon 1000\nfile 5000\ninactive_anon 0\ninactive_file 3000\nactive_file 2000\n";
        assert_eq!(working_set("6000\n", Some(v2), "inactive_file"), Some(3000));
        let v1 = "cache 5000\ninactive_file 10\ntotal_inactive_file 4000\n";
        assert_eq!(working_set("6000\n", Some(v1), "total_inactive_file"), Some(2000));
        assert_eq!(working_set("6000\n", None, "inactive_file"), Some(6000));
        assert_eq!(working_set("100\n", Some("inactive_file 400\n"), "inactive_file"), Some(0));
        assert_eq!(working_set("garbage", Some(v2), "inactive_file"), None);
    }

    #[test]
    fn the_cgroup_limits_are_read_or_absent() {
        assert_eq!(memory_limit("1073741824\n"), Some(1 << 30));
        assert_eq!(memory_limit("max\n"), None);
        assert_eq!(cpu_limit_cores("200000 100000\n"), Some(2.0));
        assert_eq!(cpu_limit_cores("max 100000\n"), None);
        assert_eq!(cgroup_cpu_seconds("usage_usec 2500000\nuser_usec 2000000\n"), Some(2.5));
        assert_eq!(v1_memory_limit("536870912\n"), Some(1 << 29));
        assert_eq!(v1_memory_limit("9223372036854771712\n"), None);
        assert_eq!(v1_cpu_limit_cores("150000\n", "100000\n"), Some(1.5));
        assert_eq!(v1_cpu_limit_cores("-1\n", "100000\n"), None);
    }
}
