//! Line charts as SVG, drawn by hand (a few dozen lines; no plotting library for three
//! pictures): panels side by side, a logarithmic x axis of members, linear y axes from zero.

use std::fmt::Write;

pub struct Panel {
    pub title: &'static str,
    pub lines: Vec<(&'static str, Vec<f64>)>,
}

const W: f64 = 300.0;
const H: f64 = 220.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 58.0;
const COLOURS: [&str; 2] = ["#1f6feb", "#d1242f"];

/// `xs` (members, > 0) shared by every panel; each line has one value per x.
pub fn panels(xs: &[f64], panels: &[Panel]) -> String {
    let width = W * panels.len() as f64;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{H}" viewBox="0 0 {width} {H}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(s, r#"<rect width="{width}" height="{H}" fill="white"/>"#);
    let (lx0, lx1) = (
        xs.iter().copied().fold(f64::INFINITY, f64::min).log10(),
        xs.iter().copied().fold(f64::NEG_INFINITY, f64::max).log10(),
    );
    for (i, p) in panels.iter().enumerate() {
        let ox = W * i as f64;
        let (x0, x1, y0, y1) = (ox + LEFT, ox + W - RIGHT, H - BOTTOM, TOP);
        let ymax = nice(
            p.lines
                .iter()
                .flat_map(|l| l.1.iter().copied())
                .fold(0.0, f64::max),
        );
        let px = |x: f64| x0 + (x.log10() - lx0) / (lx1 - lx0).max(1e-9) * (x1 - x0);
        let py = |y: f64| y0 - y / ymax * (y0 - y1);
        let _ = write!(
            s,
            r#"<text x="{}" y="16" text-anchor="middle" font-weight="bold">{}</text>"#,
            ox + W / 2.0,
            esc(p.title)
        );
        let _ = write!(
            s,
            r##"<path d="M{x0},{y1} L{x0},{y0} L{x1},{y0}" fill="none" stroke="#444"/>"##
        );
        for k in 0..=4 {
            let v = ymax * k as f64 / 4.0;
            let y = py(v);
            let _ = write!(
                s,
                r##"<line x1="{x0}" x2="{x1}" y1="{y}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
                x0 - 4.0,
                y + 4.0,
                short(v)
            );
        }
        for &x in xs {
            let _ = write!(
                s,
                r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
                px(x),
                y0 + 14.0,
                short(x)
            );
        }
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">members</text>"#,
            (x0 + x1) / 2.0,
            y0 + 28.0
        );
        for (j, (name, ys)) in p.lines.iter().enumerate() {
            let c = COLOURS[j % COLOURS.len()];
            let pts: Vec<String> = xs
                .iter()
                .zip(ys)
                .map(|(&x, &y)| format!("{:.1},{:.1}", px(x), py(y)))
                .collect();
            // The second line dashed: where the two coincide, both stay visible.
            let dash = if j % 2 == 1 {
                r#" stroke-dasharray="6 4""#
            } else {
                ""
            };
            let _ = write!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{c}" stroke-width="2"{dash}/>"#,
                pts.join(" ")
            );
            for p in &pts {
                let (cx, cy) = p.split_once(',').unwrap_or(("0", "0"));
                let _ = write!(s, r#"<circle cx="{cx}" cy="{cy}" r="3" fill="{c}"/>"#);
            }
            let ly = y0 + 42.0;
            let lx = x0 + j as f64 * 120.0;
            let _ = write!(
                s,
                r#"<line x1="{lx}" x2="{}" y1="{}" y2="{}" stroke="{c}" stroke-width="2"/><text x="{}" y="{ly}">{}</text>"#,
                lx + 14.0,
                ly - 4.0,
                ly - 4.0,
                lx + 18.0,
                esc(name)
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

/// The smallest of 1, 2, 5 × 10ⁿ at or above `v`.
fn nice(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let e = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * e)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * e)
}

fn short(v: f64) -> String {
    if v >= 1000.0 {
        format!("{}k", v / 1000.0)
    } else if v.fract() == 0.0 {
        format!("{v}")
    } else {
        format!("{v:.1}")
    }
}

fn esc(t: &str) -> String {
    t.replace('&', "&amp;").replace('<', "&lt;")
}
