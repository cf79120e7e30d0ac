//! Latency records, percentiles, and the process figures the load tool reports.

use std::collections::BTreeMap;
use std::time::Duration;

/// Latencies of one kind of request, in microseconds.
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    micros: Vec<u32>,
}

/// Percentiles of a [`Latencies`] record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// How many requests.
    pub count: usize,
    /// The median.
    pub p50: Duration,
    /// The 99th percentile.
    pub p99: Duration,
    /// The slowest.
    pub max: Duration,
}

impl Latencies {
    /// Records one request.
    pub fn record(&mut self, d: Duration) {
        self.micros
            .push(u32::try_from(d.as_micros()).unwrap_or(u32::MAX));
    }

    /// Adds another record to this one.
    pub fn merge(&mut self, other: Latencies) {
        self.micros.extend(other.micros);
    }

    /// How many requests were recorded.
    pub fn len(&self) -> usize {
        self.micros.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.micros.is_empty()
    }

    /// The nearest-rank `q` quantile (`0.9` for p90); zero when nothing was recorded.
    pub fn percentile(&self, q: f64) -> Duration {
        let mut sorted = self.micros.clone();
        sorted.sort_unstable();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted
            .get(rank - 1)
            .map_or(Duration::ZERO, |&us| Duration::from_micros(u64::from(us)))
    }

    /// Nearest-rank percentiles.
    pub fn summary(&self) -> Summary {
        let mut sorted = self.micros.clone();
        sorted.sort_unstable();
        let at = |q: f64| -> Duration {
            if sorted.is_empty() {
                return Duration::ZERO;
            }
            let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            sorted
                .get(rank - 1)
                .map_or(Duration::ZERO, |&us| Duration::from_micros(u64::from(us)))
        };
        Summary {
            count: sorted.len(),
            p50: at(0.50),
            p99: at(0.99),
            max: sorted
                .last()
                .map_or(Duration::ZERO, |&us| Duration::from_micros(u64::from(us))),
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {} / p99 {} / max {}",
            ms(self.p50),
            ms(self.p99),
            ms(self.max)
        )
    }
}

/// A duration in milliseconds with two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Counts by label (status codes, outcome names), printed in order.
#[derive(Debug, Clone, Default)]
pub struct Counts(pub BTreeMap<String, u64>);

impl Counts {
    /// Adds one to `label`.
    pub fn add(&mut self, label: impl Into<String>) {
        *self.0.entry(label.into()).or_default() += 1;
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Counts) {
        for (k, v) in &other.0 {
            *self.0.entry(k.clone()).or_default() += v;
        }
    }

    /// The sum of all counts.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        f.write_str(&parts.join(", "))
    }
}

/// `VmRSS` and `VmHWM` of this process in KiB, from `/proc/self/status` (Linux only).
pub fn memory_kib() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// How many file descriptors this process has open (sockets included), from `/proc/self/fd`.
pub fn open_fds() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count())
}

/// The 1, 5 and 15 minute load averages, from `/proc/loadavg`.
pub fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let parts: Vec<&str> = text.split_whitespace().take(3).collect();
    (parts.len() == 3).then(|| parts.join(" "))
}

/// CPU time (user + system) of each thread of this process, by thread id, with its name, from
/// `/proc/self/task/*/stat` (Linux only; clock ticks taken as the usual 100 per second). Name
/// runtime threads (`tokio::runtime::Builder::thread_name`) to tell server from client work.
#[derive(Debug, Clone, Default)]
pub struct CpuSnapshot(BTreeMap<String, (String, Duration)>);

impl CpuSnapshot {
    /// The threads alive now.
    pub fn take() -> Self {
        let mut out = BTreeMap::new();
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return Self(out);
        };
        for task in tasks.flatten() {
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue;
            };
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            let name = stat.get(open + 1..close).unwrap_or_default().to_owned();
            let fields: Vec<&str> = stat
                .get(close + 1..)
                .unwrap_or_default()
                .split_whitespace()
                .collect();
            // After the name: state is field 3 of the file, utime 14 and stime 15.
            let ticks = |i: usize| {
                fields
                    .get(i)
                    .and_then(|f| f.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            let cpu = Duration::from_millis((ticks(11) + ticks(12)) * 10);
            let tid = task.file_name().to_string_lossy().into_owned();
            out.insert(tid, (name, cpu));
        }
        Self(out)
    }

    /// CPU used since `earlier` by threads whose name starts with `prefix` (threads that ended
    /// in between are not counted; threads started since count in full).
    pub fn since(&self, earlier: &CpuSnapshot, prefix: &str) -> Duration {
        self.0
            .iter()
            .filter(|(_, (name, _))| name.starts_with(prefix))
            .map(|(tid, (_, cpu))| {
                let before = earlier.0.get(tid).map_or(Duration::ZERO, |(_, d)| *d);
                cpu.saturating_sub(before)
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut l = Latencies::default();
        for us in 1..=100 {
            l.record(Duration::from_micros(us));
        }
        let s = l.summary();
        assert_eq!(s.count, 100);
        assert_eq!(s.p50, Duration::from_micros(50));
        assert_eq!(s.p99, Duration::from_micros(99));
        assert_eq!(s.max, Duration::from_micros(100));
        assert_eq!(l.percentile(0.90), Duration::from_micros(90));
        assert_eq!(Latencies::default().summary().p99, Duration::ZERO);
        assert_eq!(Latencies::default().percentile(0.9), Duration::ZERO);
    }
}
