//! The SVG of latency percentile curves.

#[allow(unused_imports)]
use super::*;

pub(crate) fn svg_plot(path: &Path, curves: &[(&str, &Value, &str)]) {
    let points = [
        "p10", "p25", "p50", "p75", "p90", "p95", "p99", "p99.9", "p99.99",
    ];
    // x: -log10(1 - p) so the tail spreads out.
    let x_of = |p: &str| {
        let v: f64 = p.trim_start_matches('p').parse::<f64>().unwrap() / 100.0;
        -(1.0 - v).log10()
    };
    let max_ms = curves
        .iter()
        .flat_map(|(_, r, _)| points.iter().map(move |p| percentile_ms(r, p)))
        .filter(|v| v.is_finite())
        .fold(0.1_f64, f64::max);
    let (w, h, left, bottom) = (720.0, 420.0, 70.0, 50.0);
    let sx = |x: f64| left + x / 4.0 * (w - left - 20.0);
    let sy = |ms: f64| h - bottom - ms / max_ms * (h - bottom - 30.0);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/><text x="{left}" y="18" font-size="14">tripgate latency percentiles (oha at a fixed rate, corrected for coordinated omission)</text>"#
    );
    for p in points {
        let x = sx(x_of(p));
        svg += &format!(
            r##"<line x1="{x}" y1="{}" x2="{x}" y2="30" stroke="#eee"/><text x="{x}" y="{}" text-anchor="middle">{p}</text>"##,
            h - bottom,
            h - bottom + 16.0
        );
    }
    for i in 0..=4 {
        let ms = max_ms * i as f64 / 4.0;
        let y = sy(ms);
        svg += &format!(
            r##"<line x1="{left}" y1="{y}" x2="{}" y2="{y}" stroke="#eee"/><text x="{}" y="{}" text-anchor="end">{ms:.2} ms</text>"##,
            w - 20.0,
            left - 6.0,
            y + 4.0
        );
    }
    for (k, (name, result, colour)) in curves.iter().enumerate() {
        let path_points: Vec<String> = points
            .iter()
            .map(|p| format!("{:.1},{:.1}", sx(x_of(p)), sy(percentile_ms(result, p))))
            .collect();
        svg += &format!(
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            path_points.join(" ")
        );
        svg += &format!(
            r#"<text x="{}" y="{}" fill="{colour}">{name}</text>"#,
            left + 10.0,
            40.0 + 16.0 * k as f64
        );
    }
    svg += "</svg>\n";
    std::fs::write(path, svg).unwrap();
}
