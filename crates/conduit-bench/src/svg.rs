//! A bar chart of a run, as SVG: three panels (round trip, 64-byte
//! messages per second, 1 MiB GB/s), one bar per case, floors in grey,
//! conduit in blue, peers in orange.

use crate::driver::Measurement;

fn color(name: &str) -> &'static str {
    if name.starts_with("conduit/") {
        "#2f6fd6"
    } else if name.starts_with("peer/") {
        "#e08a1e"
    } else {
        "#9aa0a6"
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The chart for `results`.
pub fn chart(results: &[Measurement]) -> String {
    type Panel = (&'static str, fn(&Measurement) -> Option<f64>, fn(f64) -> String);
    let panels: [Panel; 3] = [
        (
            "round trip p50, 8 B (µs, log scale, shorter is better)",
            |m| m.rtt_p50_ns.map(|v| v / 1e3),
            |v| format!("{v:.2} µs"),
        ),
        (
            "one-way 64 B messages (M/s, longer is better)",
            |m| m.msgs_per_s_64b.map(|v| v / 1e6),
            |v| format!("{v:.2} M/s"),
        ),
        ("one-way 1 MiB messages (GB/s, longer is better)", |m| m.gb_per_s_1mib, |v| format!("{v:.2} GB/s")),
    ];
    let (row, label_w, bar_w, pad) = (18.0, 150.0, 420.0, 12.0);
    let panel_h = 28.0 + row * results.len() as f64 + pad;
    let width = label_w + bar_w + 110.0;
    let height = panel_h * panels.len() as f64 + 10.0;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    for (p, (title, value, label)) in panels.iter().enumerate() {
        let top = 10.0 + p as f64 * panel_h;
        out += &format!("<text x=\"8\" y=\"{}\" font-weight=\"bold\">{}</text>\n", top + 14.0, escape(title));
        let max = results.iter().filter_map(value).fold(0.0f64, f64::max).max(f64::MIN_POSITIVE);
        // Round trips span 0.1 µs to 1 ms: a log scale keeps both visible.
        let log = p == 0;
        let min = results.iter().filter_map(value).filter(|v| *v > 0.0).fold(max, f64::min) / 2.0;
        let scale = |v: f64| {
            if log && max > min { ((v.max(min) / min).ln() / (max / min).ln()).clamp(0.0, 1.0) } else { v / max }
        };
        for (i, m) in results.iter().enumerate() {
            let y = top + 24.0 + i as f64 * row;
            out += &format!("<text x=\"8\" y=\"{}\">{}</text>\n", y + 12.0, escape(&m.name));
            match value(m) {
                Some(v) => {
                    let w = (scale(v) * bar_w).max(1.0);
                    out += &format!(
                        "<rect x=\"{label_w}\" y=\"{y}\" width=\"{w:.1}\" height=\"{}\" fill=\"{}\"/>\n<text x=\"{}\" y=\"{}\">{}</text>\n",
                        row - 4.0,
                        color(&m.name),
                        label_w + w + 4.0,
                        y + 12.0,
                        escape(&label(v))
                    );
                }
                None => out += &format!("<text x=\"{label_w}\" y=\"{}\" fill=\"#888\">n/a</text>\n", y + 12.0),
            }
        }
    }
    out += "</svg>\n";
    out
}
