//! Charts drawn on the server as inline SVG: no script, no external asset,
//! nothing the Content-Security-Policy has to allow. Colours come from
//! classes in console.css (inline style attributes would need
//! 'unsafe-inline').

use maud::{html, Markup};

/// Per-hour pairs (all decisions, rejections) as grouped columns, oldest
/// on the left; `labels` are the hours' captions.
pub fn hourly(labels: &[String], pairs: &[(u64, u64)], caption: &str) -> Markup {
    const WIDTH: f64 = 960.0;
    const HEIGHT: f64 = 220.0;
    const LEFT: f64 = 40.0;
    const BOTTOM: f64 = 24.0;
    let max = pairs.iter().map(|(a, _)| *a).max().unwrap_or(0).max(1) as f64;
    let slot = (WIDTH - LEFT) / pairs.len().max(1) as f64;
    let bar = (slot / 2.0 - 2.0).max(1.0);
    let scale = |n: u64| (n as f64 / max) * (HEIGHT - BOTTOM - 10.0);
    html! {
        svg class="chart" viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-label=(caption) {
            title { (caption) }
            line class="axis" x1=(LEFT) y1=(HEIGHT - BOTTOM) x2=(WIDTH) y2=(HEIGHT - BOTTOM) {}
            text class="tick" x=(LEFT - 4.0) y=(10.0 + 4.0) text-anchor="end" { (max as u64) }
            text class="tick" x=(LEFT - 4.0) y=(HEIGHT - BOTTOM) text-anchor="end" { "0" }
            @for (i, (all, rejected)) in pairs.iter().enumerate() {
                @let x = LEFT + i as f64 * slot + 1.0;
                @let h_all = scale(*all);
                @let h_rej = scale(*rejected);
                rect class="bar-all" x=(x) y=(HEIGHT - BOTTOM - h_all) width=(bar) height=(h_all) {
                    title { (labels.get(i).map(String::as_str).unwrap_or("")) ": " (all) }
                }
                rect class="bar-reject" x=(x + bar + 1.0) y=(HEIGHT - BOTTOM - h_rej) width=(bar) height=(h_rej) {
                    title { (labels.get(i).map(String::as_str).unwrap_or("")) ": " (rejected) }
                }
                @if i % 3 == 0 {
                    text class="tick" x=(x + bar) y=(HEIGHT - 6.0) text-anchor="middle" {
                        (labels.get(i).map(String::as_str).unwrap_or(""))
                    }
                }
            }
        }
    }
}

/// Labelled counts as horizontal bars, largest first.
pub fn bars(rows: &[(String, u64)], caption: &str) -> Markup {
    const WIDTH: f64 = 460.0;
    const ROW: f64 = 24.0;
    const LABEL: f64 = 210.0;
    let mut rows = rows.to_vec();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let max = rows.first().map_or(1, |r| r.1.max(1)) as f64;
    let height = ROW * rows.len().max(1) as f64 + 4.0;
    html! {
        svg class="chart" viewBox=(format!("0 0 {WIDTH} {height}")) role="img" aria-label=(caption) {
            title { (caption) }
            @for (i, (label, count)) in rows.iter().enumerate() {
                @let y = i as f64 * ROW + 2.0;
                @let w = (*count as f64 / max) * (WIDTH - LABEL - 50.0);
                text class="label" x=(LABEL - 6.0) y=(y + ROW * 0.65) text-anchor="end" { (label) }
                rect class="bar-reject" x=(LABEL) y=(y + 3.0) width=(w.max(1.0)) height=(ROW - 8.0) {}
                text class="count" x=(LABEL + w + 6.0) y=(y + ROW * 0.65) { (count) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_scale_to_the_largest_count_and_escape_labels() {
        let svg = bars(&[("a<b".into(), 2), ("c".into(), 4)], "x").into_string();
        assert!(svg.contains("a&lt;b"), "{svg}");
        assert!(
            svg.find(">c<").unwrap() < svg.find("a&lt;b").unwrap(),
            "largest first"
        );
        let svg = hourly(&["00".into(), "01".into()], &[(4, 1), (0, 0)], "y").into_string();
        assert_eq!(svg.matches("<rect").count(), 4);
    }
}
