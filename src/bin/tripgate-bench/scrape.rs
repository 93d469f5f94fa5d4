//! What the bench reads off Redis, the simulator and tripgate's /metrics.

#[allow(unused_imports)]
use super::*;

/// Calls Redis has served, of every command or of the one named.
pub(crate) fn redis_calls(port: u16, command: Option<&str>) -> u64 {
    let output = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "info", "commandstats"])
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| command.is_none_or(|c| l.starts_with(&format!("cmdstat_{c}:"))))
        .filter_map(|l| l.split("calls=").nth(1))
        .filter_map(|r| r.split(',').next()?.parse::<u64>().ok())
        .sum()
}

pub(crate) fn simulator_requests(url: &str) -> u64 {
    let output = Command::new("curl")
        .args(["-s", &format!("{url}/admin/stats")])
        .output()
        .expect("curl");
    serde_json::from_slice::<Value>(&output.stdout)
        .ok()
        .and_then(|v| v["requests"].as_u64())
        .unwrap_or(0)
}

/// The admin listener's Prometheus text.
pub(crate) fn metrics_text(admin: &str) -> String {
    let output = Command::new("curl")
        .args(["-s", &format!("{admin}/metrics")])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The admin listener's `/readyz` answer (Null if it cannot be read).
pub(crate) fn readiness(admin: &str) -> Value {
    let output = Command::new("curl")
        .args(["-s", &format!("{admin}/readyz")])
        .output()
        .expect("curl");
    serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
}

pub(crate) fn metric(admin: &str, series: &str) -> f64 {
    metric_in(&metrics_text(admin), series)
}

/// One series' value in Prometheus text already read (0 if absent).
pub(crate) fn metric_in(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// The cumulative bucket counts of one histogram series in `metrics`
/// (Prometheus text), as (upper bound in seconds, count); `series` is the
/// bucket line up to its `le` label, e.g.
/// `tripgate_decision_stage_seconds_bucket{stage="audit",`.
pub(crate) fn buckets(metrics: &str, series: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{series}le=\"");
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect()
}

/// One stage of `tripgate_decision_stage_seconds` (see `buckets`).
pub(crate) fn stage_buckets(metrics: &str, stage: &str) -> Vec<(f64, f64)> {
    buckets(
        metrics,
        &format!("tripgate_decision_stage_seconds_bucket{{stage=\"{stage}\","),
    )
}

/// Trip checks in `tripgate_http_request_duration_seconds`: a request's
/// time inside tripgate, from its parsed head to its answer (see `buckets`).
pub(crate) fn trip_http_buckets(metrics: &str) -> Vec<(f64, f64)> {
    buckets(
        metrics,
        "tripgate_http_request_duration_seconds_bucket{method=\"POST\",route=\"/v1/checks/trip\",",
    )
}

/// The share of observations between two bucket snapshots that took
/// longer than `seconds` (a bucket bound).
pub(crate) fn share_over(before: &[(f64, f64)], after: &[(f64, f64)], seconds: f64) -> f64 {
    let delta = |le: f64| {
        let at = |v: &[(f64, f64)]| v.iter().find(|b| b.0 == le).map_or(0.0, |b| b.1);
        at(after) - at(before)
    };
    let all = delta(f64::INFINITY);
    if all <= 0.0 {
        return 0.0;
    }
    (all - delta(seconds)) / all
}
