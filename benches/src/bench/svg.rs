//! Plots as plain SVG (no plotting dependency): grouped bars and line
//! charts with a log-scale y axis, which is what packet rates from 0.1 to
//! 1000 Mpps need.

use std::fmt::Write;

const W: f64 = 760.0;
const H: f64 = 420.0;
const L: f64 = 70.0;
const R: f64 = 170.0;
const T: f64 = 40.0;
const B: f64 = 60.0;
/// Colours of series, in order.
pub const COLORS: &[&str] = &[
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#7f7f7f",
];

/// One line of a line chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// (x, y) points, y > 0.
    pub points: Vec<(f64, f64)>,
    /// Drawn dashed (reference lines).
    pub dashed: bool,
    /// Colour.
    pub color: String,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Log axis from the data: whole decades around [lo, hi].
fn decades(lo: f64, hi: f64) -> (f64, f64) {
    let lo = lo.max(1e-6).log10().floor();
    let mut hi = hi.max(1e-6).log10().ceil();
    if hi <= lo {
        hi = lo + 1.0;
    }
    (lo, hi)
}

fn head(out: &mut String, title: &str) {
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">{}</text>\n",
        W / 2.0,
        esc(title)
    );
}

fn y_axis(out: &mut String, lo: f64, hi: f64, label: &str) -> impl Fn(f64) -> f64 {
    let ph = H - T - B;
    let y = move |v: f64| T + ph * (1.0 - (v.max(1e-9).log10() - lo) / (hi - lo));
    let mut d = lo;
    while d <= hi + 1e-9 {
        let v = 10f64.powf(d);
        let yy = y(v);
        let _ = writeln!(
            out,
            "<line x1=\"{L}\" x2=\"{}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            W - R,
            L - 6.0,
            yy + 4.0,
            fmt_num(v)
        );
        d += 1.0;
    }
    let _ = writeln!(
        out,
        "<text transform=\"translate(18,{:.1}) rotate(-90)\" text-anchor=\"middle\">{}</text>\
         <line x1=\"{L}\" x2=\"{L}\" y1=\"{T}\" y2=\"{}\" stroke=\"black\"/><line x1=\"{L}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"black\"/>",
        T + (H - T - B) / 2.0,
        esc(label),
        H - B,
        W - R,
        H - B,
        H - B
    );
    y
}

fn fmt_num(v: f64) -> String {
    if v >= 1.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

fn legend(out: &mut String, items: &[(String, String, bool)]) {
    for (i, (name, color, dashed)) in items.iter().enumerate() {
        let y = T + 10.0 + 18.0 * i as f64;
        let x = W - R + 12.0;
        let dash = if *dashed {
            " stroke-dasharray=\"5,3\""
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "<line x1=\"{x}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\" stroke=\"{color}\" stroke-width=\"3\"{dash}/><text x=\"{}\" y=\"{}\">{}</text>",
            x + 22.0,
            x + 28.0,
            y + 4.0,
            esc(name)
        );
    }
}

/// Grouped bars on a log axis: one group per label, one bar per series
/// value (`None` = no bar, "n/a" written).
pub fn bars(
    title: &str,
    ylabel: &str,
    groups: &[(String, Vec<Option<f64>>)],
    names: &[&str],
) -> String {
    let mut out = String::new();
    head(&mut out, title);
    let vals: Vec<f64> = groups
        .iter()
        .flat_map(|g| g.1.iter().flatten().copied())
        .filter(|v| *v > 0.0)
        .collect();
    let (lo, hi) = decades(
        vals.iter().copied().fold(f64::MAX, f64::min).min(1.0),
        vals.iter().copied().fold(0.0, f64::max),
    );
    let y = y_axis(&mut out, lo, hi, ylabel);
    let pw = W - L - R;
    let gw = pw / groups.len().max(1) as f64;
    for (gi, (label, vs)) in groups.iter().enumerate() {
        let bw = gw * 0.8 / vs.len().max(1) as f64;
        let x0 = L + gw * gi as f64 + gw * 0.1;
        for (i, v) in vs.iter().enumerate() {
            let x = x0 + bw * i as f64;
            match v {
                Some(v) if *v > 0.0 => {
                    let yy = y(*v);
                    let _ = writeln!(
                        out,
                        "<rect x=\"{x:.1}\" y=\"{yy:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{} {v:.3}</title></rect>\
                         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\">{}</text>",
                        bw - 2.0,
                        (H - B - yy).max(0.0),
                        COLORS[i % COLORS.len()],
                        esc(names.get(i).copied().unwrap_or("")),
                        x + bw / 2.0,
                        yy - 3.0,
                        if *v >= 10.0 { format!("{v:.0}") } else { format!("{v:.2}") }
                    );
                }
                _ => {
                    let _ = writeln!(
                        out,
                        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\">n/a</text>",
                        x + bw / 2.0,
                        H - B - 4.0
                    );
                }
            }
        }
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            x0 + gw * 0.4,
            H - B + 18.0,
            esc(label)
        );
    }
    let items: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.to_string(), COLORS[i % COLORS.len()].to_string(), false))
        .collect();
    legend(&mut out, &items);
    out.push_str("</svg>\n");
    out
}

/// A line chart: linear x, log y.
pub fn lines(title: &str, xlabel: &str, ylabel: &str, series: &[Series]) -> String {
    let mut out = String::new();
    head(&mut out, title);
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|p| p.1 > 0.0)
        .collect();
    let (xmin, xmax) = pts
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (xmin, xmax) = if xmax > xmin {
        (xmin, xmax)
    } else {
        (0.0, xmin.max(1.0) * 2.0)
    };
    let (lo, hi) = decades(
        pts.iter().map(|p| p.1).fold(f64::MAX, f64::min),
        pts.iter().map(|p| p.1).fold(0.0, f64::max),
    );
    let y = y_axis(&mut out, lo, hi, ylabel);
    let pw = W - L - R;
    let x = |v: f64| L + pw * (v - xmin) / (xmax - xmin);
    for i in 0..=5 {
        let v = xmin + (xmax - xmin) * i as f64 / 5.0;
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            x(v),
            H - B + 16.0,
            if xmax - xmin >= 50.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.2}")
            }
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
        L + pw / 2.0,
        H - 18.0,
        esc(xlabel)
    );
    for s in series {
        let p: Vec<String> = s
            .points
            .iter()
            .filter(|p| p.1 > 0.0)
            .map(|p| format!("{:.1},{:.1}", x(p.0), y(p.1)))
            .collect();
        if p.is_empty() {
            continue;
        }
        let dash = if s.dashed {
            " stroke-dasharray=\"5,3\""
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{dash}/>",
            p.join(" "),
            s.color
        );
        if !s.dashed {
            for q in &p {
                let (cx, cy) = q.split_once(',').unwrap_or(("0", "0"));
                let _ = writeln!(
                    out,
                    "<circle cx=\"{cx}\" cy=\"{cy}\" r=\"3\" fill=\"{}\"/>",
                    s.color
                );
            }
        }
    }
    let items: Vec<_> = series
        .iter()
        .map(|s| (s.name.clone(), s.color.clone(), s.dashed))
        .collect();
    legend(&mut out, &items);
    out.push_str("</svg>\n");
    out
}

/// Theoretical packet rate of a link: bps / ((size + 20) × 8), in Mpps
/// (20 B = preamble + start delimiter + inter-frame gap).
pub fn line_rate_mpps(gbps: f64, size: u32) -> f64 {
    super::rfc2544::SearchConfig::line_rate_pps(gbps, f64::from(size)) / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_rate_is_the_textbook_figure() {
        assert!((line_rate_mpps(10.0, 64) - 14.880_952).abs() < 1e-5);
        assert!((line_rate_mpps(100.0, 1518) - 8.127_438).abs() < 1e-5);
    }

    #[test]
    fn charts_are_wellformed_svg() {
        let b = bars(
            "t",
            "Mpps",
            &[("a".into(), vec![Some(5.0), None])],
            &["x", "y"],
        );
        assert!(b.starts_with("<svg") && b.ends_with("</svg>\n") && b.contains("n/a"));
        let s = Series {
            name: "s".into(),
            points: vec![(64.0, 10.0), (1518.0, 1.0)],
            dashed: true,
            color: "#000".into(),
        };
        let l = lines("t", "x", "y", &[s]);
        assert!(l.contains("polyline") && l.contains("stroke-dasharray"));
    }
}
