//! How reports are printed: terminal tables that fit the width, CSV, and
//! one self-contained HTML file with inline SVG charts (no scripts, no
//! outside resources). Independent of the rest of the CLI's output code.

use std::fmt::Write as _;
use std::io::{self, Write};

/// A table of text cells; numbers are right-aligned on a terminal.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub title: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(title: &str, columns: &[&str]) -> Self {
        Self {
            title: title.into(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: Vec::new(),
        }
    }
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }
}

/// A rate as a percentage with two decimals, `-` when undefined.
pub fn pct(r: Option<f64>) -> String {
    match r {
        Some(r) => format!("{:.2}%", r * 100.0),
        None => "-".into(),
    }
}

/// The terminal's width: `COLUMNS`, else 100.
pub fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse().ok())
        .filter(|w: &usize| *w >= 20)
        .unwrap_or(100)
}

fn is_number(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '%' | ','))
}

fn cut(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Writes tables that fit in `width` columns: the widest columns are cut
/// (with `…`) until the row fits.
pub fn write_tables(out: &mut impl Write, tables: &[Table], width: usize) -> io::Result<()> {
    for t in tables {
        if !t.title.is_empty() {
            writeln!(out, "{}", t.title)?;
        }
        let n = t.columns.len();
        let mut w: Vec<usize> = t.columns.iter().map(|c| c.chars().count()).collect();
        for r in &t.rows {
            for (i, c) in r.iter().enumerate().take(n) {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let sep = 2;
        while w.iter().sum::<usize>() + sep * n.saturating_sub(1) > width {
            let (i, &max) = w
                .iter()
                .enumerate()
                .max_by_key(|(_, v)| **v)
                .expect("a table has columns");
            if max <= 6 {
                break;
            }
            w[i] = max - 1;
        }
        let line = |cells: &[String]| {
            let mut s = String::new();
            for (i, width) in w.iter().enumerate() {
                let c = cut(cells.get(i).map(String::as_str).unwrap_or(""), *width);
                if i > 0 {
                    s.push_str("  ");
                }
                if i > 0 && is_number(&c) {
                    let _ = write!(s, "{c:>width$}");
                } else if i + 1 == n {
                    s.push_str(&c);
                } else {
                    let _ = write!(s, "{c:<width$}");
                }
            }
            s.trim_end().to_string()
        };
        writeln!(out, "{}", line(&t.columns))?;
        for r in &t.rows {
            writeln!(out, "{}", line(r))?;
        }
        writeln!(out)?;
    }
    Ok(())
}

/// One table as CSV with a header row.
pub fn write_csv(out: impl Write, t: &Table) -> io::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(&t.columns).map_err(io::Error::other)?;
    for r in &t.rows {
        w.write_record(r).map_err(io::Error::other)?;
    }
    w.flush()
}

pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const COLORS: [&str; 6] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
];

/// A line chart: one line per series over the same x labels.
pub fn line_chart(title: &str, labels: &[String], series: &[(String, Vec<f64>)]) -> String {
    let (w, h, left, bottom, top) = (760.0, 260.0, 50.0, 30.0, 30.0);
    let max = series
        .iter()
        .flat_map(|s| s.1.iter().copied())
        .fold(0.0_f64, f64::max)
        .max(1e-9);
    let n = labels.len().max(2) as f64;
    let x = |i: usize| left + (w - left - 20.0) * i as f64 / (n - 1.0);
    let y = |v: f64| top + (h - top - bottom) * (1.0 - v / max);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\">\
         <title>{t}</title><text x=\"{left}\" y=\"18\" font-size=\"14\" font-weight=\"bold\">{t}</text>\
         <line x1=\"{left}\" y1=\"{y0}\" x2=\"{x1}\" y2=\"{y0}\" stroke=\"#999\"/>\
         <line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{y0}\" stroke=\"#999\"/>\
         <text x=\"4\" y=\"{ty}\" font-size=\"10\">{maxl}</text><text x=\"4\" y=\"{y0}\" font-size=\"10\">0</text>",
        t = escape(title),
        y0 = h - bottom,
        x1 = w - 20.0,
        ty = top + 4.0,
        maxl = fmt_num(max),
    );
    let step = (labels.len() / 8).max(1);
    for (i, l) in labels.iter().enumerate().step_by(step) {
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\">{}</text>",
            x(i),
            h - 12.0,
            escape(l)
        );
    }
    for (k, (name, values)) in series.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let pts: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v)))
            .collect();
        let _ = write!(
            s,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>\
             <rect x=\"{:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{color}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\">{}</text>",
            pts.join(" "),
            w - 200.0,
            top + 14.0 * k as f64,
            w - 185.0,
            top + 9.0 + 14.0 * k as f64,
            escape(name)
        );
    }
    s.push_str("</svg>");
    s
}

/// Horizontal bars, each labelled with its value (the funnel).
pub fn bar_chart(title: &str, bars: &[(String, f64)]) -> String {
    let (w, row) = (760.0, 26.0);
    let h = 30.0 + row * bars.len() as f64;
    let max = bars.iter().map(|b| b.1).fold(0.0_f64, f64::max).max(1e-9);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\">\
         <title>{t}</title><text x=\"0\" y=\"18\" font-size=\"14\" font-weight=\"bold\">{t}</text>",
        t = escape(title)
    );
    for (i, (label, v)) in bars.iter().enumerate() {
        let y = 28.0 + row * i as f64;
        let bw = (w - 260.0) * v / max;
        let _ = write!(
            s,
            "<text x=\"0\" y=\"{:.1}\" font-size=\"12\">{}</text>\
             <rect x=\"150\" y=\"{y:.1}\" width=\"{bw:.1}\" height=\"{:.1}\" fill=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\">{}</text>",
            y + 14.0,
            escape(label),
            row - 6.0,
            COLORS[i % COLORS.len()],
            155.0 + bw,
            y + 14.0,
            fmt_num(*v)
        );
    }
    s.push_str("</svg>");
    s
}

fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// One HTML page: the charts, then the tables. Self-contained: inline
/// style and SVG, nothing fetched.
pub fn html_page(title: &str, charts: &[String], tables: &[Table]) -> String {
    let mut s = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t}</title><style>\
         body{{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}}\
         table{{border-collapse:collapse;margin:0 0 2em;display:block;overflow-x:auto;max-width:100%}}th,td{{padding:3px 10px;border-bottom:1px solid #ddd}}\
         td.n{{text-align:right;font-variant-numeric:tabular-nums}}th{{text-align:left;background:#f4f4f4}}\
         figure{{margin:0 0 2em}}</style></head><body><h1>{t}</h1>\n",
        t = escape(title)
    );
    for c in charts {
        let _ = writeln!(s, "<figure>{c}</figure>");
    }
    for t in tables {
        let _ = write!(s, "<h2>{}</h2><table><thead><tr>", escape(&t.title));
        for c in &t.columns {
            let _ = write!(s, "<th>{}</th>", escape(c));
        }
        s.push_str("</tr></thead><tbody>");
        for r in &t.rows {
            s.push_str("<tr>");
            for (i, c) in r.iter().enumerate() {
                let class = if i > 0 && is_number(c) {
                    " class=\"n\""
                } else {
                    ""
                };
                let _ = write!(s, "<td{class}>{}</td>", escape(c));
            }
            s.push_str("</tr>");
        }
        s.push_str("</tbody></table>\n");
    }
    s.push_str("</body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_fit_the_width_and_html_escapes() {
        let mut t = Table::new("Links", &["url", "clicks"]);
        t.row(vec![
            "https://example.org/".to_string() + &"x".repeat(200),
            "12".into(),
        ]);
        let mut out = Vec::new();
        write_tables(&mut out, &[t.clone()], 60).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.lines().all(|l| l.chars().count() <= 60), "{text}");
        assert!(text.contains('…'));
        let html = html_page(
            "<b>",
            &[line_chart("c", &["0".into()], &[("a<".into(), vec![1.0])])],
            &[t],
        );
        assert!(html.contains("&lt;b&gt;") && html.contains("a&lt;") && !html.contains("<b>"));
    }
}
