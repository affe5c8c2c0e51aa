//! The standard `process_*` metrics, read from `/proc/self` at scrape time (Linux; elsewhere
//! they are left out). As Prometheus's own procfs library does, CPU ticks are taken at 100 per
//! second (USER_HZ, which Linux fixes at 100 for user space).

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

const USER_HZ: f64 = 100.0;

#[derive(Debug)]
pub struct ProcessCollector;

/// What a scrape reports of the process.
#[derive(Debug, Default, PartialEq)]
struct Sample {
    cpu_seconds: f64,
    resident_bytes: i64,
    start_time_seconds: f64,
    open_fds: i64,
    max_fds: Option<i64>,
}

impl Sample {
    fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as i64;
        let mut sample = parse(&stat, &boot, &status, &limits)?;
        sample.open_fds = open_fds;
        Some(sample)
    }
}

/// The sample in `/proc/self/stat`, `/proc/stat`, `/proc/self/status` and `/proc/self/limits`.
fn parse(stat: &str, boot: &str, status: &str, limits: &str) -> Option<Sample> {
    // The command name (field 2) may hold spaces and parentheses: fields are counted from the
    // last `)`. Field 3 (state) is then the first.
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<f64>().ok();
    let (utime, stime, start_ticks) = (field(14)?, field(15)?, field(22)?);
    let boot_time = boot
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse::<f64>()
        .ok()?;
    let resident_kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<i64>()
        .ok()?;
    let max_fds = limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok());
    Some(Sample {
        cpu_seconds: (utime + stime) / USER_HZ,
        resident_bytes: resident_kib * 1024,
        start_time_seconds: boot_time + start_ticks / USER_HZ,
        open_fds: 0,
        max_fds,
    })
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let Some(sample) = Sample::read() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(sample.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu",
            "Total user and system CPU time spent.",
            Some(&Unit::Seconds),
            cpu.metric_type(),
        )?)?;
        let gauges = [
            (
                "process_resident_memory",
                "Resident memory size.",
                Some(Unit::Bytes),
                sample.resident_bytes as f64,
            ),
            (
                "process_start_time",
                "Start time of the process since the Unix epoch.",
                Some(Unit::Seconds),
                sample.start_time_seconds,
            ),
            (
                "process_open_fds",
                "Open file descriptors.",
                None,
                sample.open_fds as f64,
            ),
        ];
        let max_fds = sample.max_fds.map(|max| {
            (
                "process_max_fds",
                "Limit on open file descriptors.",
                None,
                max as f64,
            )
        });
        for (name, help, unit, value) in gauges.into_iter().chain(max_fds) {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(
                name,
                help,
                unit.as_ref(),
                gauge.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_read_by_field_even_with_spaces_in_the_command() {
        let stat = "4242 (vane (worker) 1) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 \
                    3 0 12345 1000 2000";
        let sample = parse(
            stat,
            "cpu  1 2 3\nbtime 1764700000\n",
            "Name:\tvane\nVmRSS:\t   18344 kB\n",
            "Limit                     Soft Limit           Hard Limit           Units\n\
             Max open files            1048576              1048576              files\n",
        )
        .unwrap();
        assert_eq!(
            sample,
            Sample {
                cpu_seconds: 3.0,
                resident_bytes: 18344 * 1024,
                start_time_seconds: 1764700000.0 + 123.45,
                open_fds: 0,
                max_fds: Some(1048576),
            }
        );
    }

    #[test]
    fn this_process_can_be_read() {
        let sample = Sample::read().expect("/proc is readable on Linux");
        assert!(
            sample.resident_bytes > 0 && sample.open_fds > 0,
            "{sample:?}"
        );
    }
}
