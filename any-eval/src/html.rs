//! The HTML report: one self-contained page (no scripts or fonts from anywhere), charts drawn
//! as inline SVG, every case a row that opens to show each service's answer and scores.

use std::fmt::Write as _;

use crate::Report;

fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn num(v: f64) -> String {
    crate::report::number(v)
}

/// Colours for the services, told apart also in grey.
const COLOURS: [&str; 6] = [
    "#3465a4", "#f57900", "#4e9a06", "#75507b", "#c4a000", "#cc0000",
];

const STYLE: &str = "body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:1100px;padding:0 1rem;color:#222}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem}
.sub{color:#666;margin-top:0}table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{border-bottom:1px solid #ddd;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}
.charts{display:flex;flex-wrap:wrap;gap:1rem}.chart{border:1px solid #ddd;border-radius:6px;padding:.5rem}
.chart h3{font-size:.95rem;margin:.2rem 0 .4rem}.legend span{display:inline-block;margin-right:1rem}
.legend i{display:inline-block;width:.8rem;height:.8rem;margin-right:.3rem;vertical-align:-1px}
details{border-bottom:1px solid #eee;padding:.3rem 0}summary{cursor:pointer}
.out{white-space:pre-wrap;background:#f8f8f8;border-radius:4px;padding:.4rem;margin:.2rem 0}
.defs dt{font-weight:600;margin-top:.4rem}.defs dd{margin:0 0 0 1.2rem;color:#444}
.err{color:#a40000}.ok{color:#2e7d32}.fail{color:#a40000}.muted{color:#777}";

impl Report {
    /// The report as one self-contained HTML page: a summary table, a bar chart per metric
    /// (services side by side, with 95% intervals), and every case with each service's
    /// answer and scores.
    pub fn to_html(&self) -> String {
        let mut h = String::new();
        let _ = write!(
            h,
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
             <title>{} — any-eval report</title><style>{STYLE}</style></head><body>",
            esc(&self.dataset)
        );
        let cases = self.services.first().map_or(0, |s| s.cases.len());
        let _ = write!(
            h,
            "<h1>{}</h1><p class=\"sub\">{} cases · {} service{} · {} metric{}</p>",
            esc(&self.dataset),
            cases,
            self.services.len(),
            if self.services.len() == 1 { "" } else { "s" },
            self.metrics.len(),
            if self.metrics.len() == 1 { "" } else { "s" },
        );
        self.summary(&mut h);
        let defined = self.defined();
        if !defined.is_empty() {
            h.push_str("<dl class=\"defs\">");
            for (m, d) in defined {
                let _ = write!(h, "<dt>{}</dt><dd>{}</dd>", esc(m), esc(d));
            }
            h.push_str("</dl>");
        }
        self.charts(&mut h);
        self.cases(&mut h);
        h.push_str("</body></html>\n");
        h
    }

    fn summary(&self, h: &mut String) {
        h.push_str(
            "<h2>Summary</h2><table><thead><tr><th>service</th><th>cases</th><th>errors</th>",
        );
        for m in &self.metrics {
            let _ = write!(h, "<th>{}</th>", esc(m));
        }
        h.push_str("</tr></thead><tbody>");
        for (i, s) in self.services.iter().enumerate() {
            let _ = write!(
                h,
                "<tr><td><span style=\"color:{}\">■</span> {}{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>",
                COLOURS[i % COLOURS.len()],
                esc(&s.label),
                if s.stopped {
                    " <span class=\"err\">(stopped)</span>"
                } else {
                    ""
                },
                s.cases.len(),
                s.errors
            );
            for m in &self.metrics {
                match s.aggregates.get(m) {
                    Some(a) => {
                        let ci = a.ci95.map_or(String::new(), |(lo, hi)| {
                            format!(" <span class=\"muted\">[{}, {}]</span>", num(lo), num(hi))
                        });
                        let _ = write!(h, "<td class=\"n\">{}{ci}</td>", num(a.value));
                    }
                    None => h.push_str("<td class=\"n\">–</td>"),
                }
            }
            h.push_str("</tr>");
        }
        h.push_str("</tbody></table>");
    }

    fn charts(&self, h: &mut String) {
        h.push_str("<h2>Metrics</h2><p class=\"legend\">");
        for (i, s) in self.services.iter().enumerate() {
            let _ = write!(
                h,
                "<span><i style=\"background:{}\"></i>{}</span>",
                COLOURS[i % COLOURS.len()],
                esc(&s.label)
            );
        }
        h.push_str("</p><div class=\"charts\">");
        let (width, bar, gap, top, bottom) = (320.0, 34.0, 14.0, 12.0, 22.0);
        for m in &self.metrics {
            let values: Vec<Option<&crate::Aggregate>> =
                self.services.iter().map(|s| s.aggregates.get(m)).collect();
            let max = values
                .iter()
                .flatten()
                .map(|a| a.ci95.map_or(a.value, |(_, hi)| hi.max(a.value)))
                .fold(0.0f64, f64::max);
            let scale_max = if max <= 1.0 { 1.0 } else { max * 1.1 };
            let n = self.services.len().max(1) as f64;
            let height = top + bottom + n * (bar + gap);
            let plot = width - 70.0;
            let _ = write!(
                h,
                "<div class=\"chart\"><h3>{}</h3><svg class=\"metric-chart\" data-metric=\"{}\" \
                 width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" \
                 aria-label=\"{} by service\">",
                esc(m),
                esc(m),
                esc(m)
            );
            let _ = write!(
                h,
                "<line x1=\"10\" y1=\"{top}\" x2=\"10\" y2=\"{}\" stroke=\"#999\"/>",
                height - bottom
            );
            for (i, v) in values.iter().enumerate() {
                let y = top + i as f64 * (bar + gap);
                let colour = COLOURS[i % COLOURS.len()];
                match v {
                    Some(crate::Aggregate {
                        value, ci95: ci, ..
                    }) => {
                        let w = (value.max(0.0) / scale_max * plot).max(1.0);
                        let _ = write!(
                            h,
                            "<rect class=\"bar\" x=\"10\" y=\"{y}\" width=\"{w:.1}\" height=\"{bar}\" fill=\"{colour}\"><title>{}: {}</title></rect>",
                            esc(&self.services[i].label),
                            num(*value)
                        );
                        if let Some((lo, hi)) = ci {
                            let (x1, x2) = (
                                10.0 + lo.max(0.0) / scale_max * plot,
                                10.0 + hi.max(0.0) / scale_max * plot,
                            );
                            let mid = y + bar / 2.0;
                            let _ = write!(
                                h,
                                "<path d=\"M{x1:.1} {mid}H{x2:.1}M{x1:.1} {:.1}V{:.1}M{x2:.1} {:.1}V{:.1}\" stroke=\"#222\" fill=\"none\"/>",
                                mid - 6.0,
                                mid + 6.0,
                                mid - 6.0,
                                mid + 6.0
                            );
                        }
                        let _ = write!(
                            h,
                            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\">{}</text>",
                            (10.0 + w + 4.0).min(width - 50.0),
                            y + bar / 2.0 + 4.0,
                            num(*value)
                        );
                    }
                    None => {
                        let _ = write!(
                            h,
                            "<text x=\"16\" y=\"{:.1}\" font-size=\"12\" fill=\"#777\">no scores</text>",
                            y + bar / 2.0 + 4.0
                        );
                    }
                }
            }
            let _ = write!(
                h,
                "<text x=\"10\" y=\"{:.1}\" font-size=\"11\" fill=\"#777\">0</text>\
                 <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" fill=\"#777\" text-anchor=\"end\">{}</text></svg></div>",
                height - 6.0,
                10.0 + plot,
                height - 6.0,
                num(scale_max)
            );
        }
        h.push_str("</div>");
    }

    fn cases(&self, h: &mut String) {
        let Some(first) = self.services.first() else {
            return;
        };
        h.push_str("<h2>Cases</h2>");
        for (i, case) in first.cases.iter().enumerate() {
            let _ = write!(
                h,
                "<details class=\"case\"><summary><b>{}</b> — {}",
                esc(&case.id),
                esc(&clip(&case.input, 100))
            );
            for (j, s) in self.services.iter().enumerate() {
                let verdict = s.cases.get(i).map_or("–", |r| {
                    if r.output.error.is_some() {
                        "error"
                    } else if r.scores.values().any(|s| s.pass == Some(false)) {
                        "fail"
                    } else {
                        "ok"
                    }
                });
                let class = match verdict {
                    "ok" => "ok",
                    "–" => "muted",
                    "fail" => "fail",
                    _ => "err",
                };
                let _ = write!(
                    h,
                    " <span class=\"{class}\" style=\"border-left:4px solid {};padding-left:3px\">{verdict}</span>",
                    COLOURS[j % COLOURS.len()]
                );
            }
            let _ = write!(
                h,
                "</summary><p><b>Input</b></p><div class=\"out\">{}</div>",
                esc(&case.input)
            );
            if !case.expected.is_empty() {
                let _ = write!(
                    h,
                    "<p><b>Expected</b>: {}</p>",
                    case.expected
                        .iter()
                        .map(|e| esc(e))
                        .collect::<Vec<_>>()
                        .join(" · ")
                );
            }
            h.push_str("<table><thead><tr><th>service</th><th>answer</th><th>scores</th></tr></thead><tbody>");
            for s in &self.services {
                let Some(r) = s.cases.get(i).filter(|r| r.id == case.id) else {
                    continue;
                };
                let answer = match &r.output.error {
                    Some(e) => format!("<span class=\"err\">error: {}</span>", esc(e)),
                    None => format!("<div class=\"out\">{}</div>", esc(&r.output.text)),
                };
                let mut scores: Vec<String> = r
                    .scores
                    .iter()
                    .map(|(m, s)| {
                        let reason = s.reason.as_ref().map_or(String::new(), |r| {
                            format!(" <span class=\"muted\">({})</span>", esc(r))
                        });
                        format!("{} {}{reason}", esc(m), num(s.value))
                    })
                    .collect();
                scores.extend(
                    r.metric_errors
                        .iter()
                        .map(|(m, e)| format!("<span class=\"err\">{}: {}</span>", esc(m), esc(e))),
                );
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{answer}</td><td>{}<br><span class=\"muted\">{:.0} ms{}</span></td></tr>",
                    esc(&s.label),
                    scores.join("<br>"),
                    r.output.latency.as_secs_f64() * 1e3,
                    if r.output.cached { " · cached" } else { "" }
                );
            }
            h.push_str("</tbody></table></details>");
        }
    }
}

fn clip(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() > max {
        flat.chars().take(max).chain(['…']).collect()
    } else {
        flat
    }
}
