//! The dashboard: one server-rendered page, no JavaScript and no separate
//! build chain. Charts are inline SVG, so they draw without scripts too.
//! Every value from the store or the configuration is escaped.

use std::fmt::Write as _;

use axum::extract::State;
use axum::response::Html;
use certkeeper_agent::status::{CertStatus, StatusReport};

use super::{AdminState, unix};

/// The table lists this many certificates, soonest expiry first.
const TABLE_ROWS: usize = 1000;

/// Recent events shown.
const EVENTS: i64 = 25;

/// `GET /`.
pub(crate) async fn page(State(s): State<AdminState>) -> Html<String> {
    let now = s.agent.now();
    let mut body = String::new();
    match s.agent.status().await {
        Ok(report) => {
            summary(&mut body, &report, now);
            expiry_chart(&mut body, &report, now);
            certificates(&mut body, &report, now);
        }
        Err(e) => {
            let _ = write!(
                body,
                "<p class=\"error\">cannot read the certificates: {}</p>",
                esc(&e.to_string())
            );
        }
    }
    match s.agent.limits().await {
        Ok(limits) => budgets(&mut body, &limits),
        Err(e) => {
            let _ = write!(
                body,
                "<p class=\"error\">cannot read the limits: {}</p>",
                esc(&e.to_string())
            );
        }
    }
    match s.agent.store().recent_events(EVENTS).await {
        Ok(events) => recent_events(&mut body, &events),
        Err(e) => {
            let _ = write!(
                body,
                "<p class=\"error\">cannot read the events: {}</p>",
                esc(&e.to_string())
            );
        }
    }
    if let Some(ra) = &s.ca {
        match super::api::ca_summary(ra, now).await {
            Ok(ca) => ca_chart(&mut body, &ca, now),
            Err(e) => {
                let _ = write!(
                    body,
                    "<p class=\"error\">cannot read the CA: {}</p>",
                    esc(&e.to_string())
                );
            }
        }
    }
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>certkeeper</title><style>{STYLE}</style></head>\
         <body><h1>certkeeper</h1>{body}</body></html>\n"
    ))
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}\
h2{font-size:1.1em;margin-top:1.6em}table{border-collapse:collapse}\
td,th{padding:.25em .7em;border-bottom:1px solid #ddd;text-align:left}\
.soon{color:#b00;font-weight:600}.warn{color:#a60}.ok{color:#060}\
.bar{display:inline-block;width:14em;height:.8em;background:#eee;vertical-align:middle}\
.bar>span{display:block;height:100%;background:#47a}.bar>span.full{background:#b00}\
.error{color:#b00}svg text{font-size:10px;fill:#555}";

/// Escapes text for HTML content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Whole days until the served certificate expires (negative: expired).
fn days_left(cert: &CertStatus, now: i64) -> Option<i64> {
    unix(cert.not_after.as_deref()).map(|t| (t - now).div_euclid(86_400))
}

fn urgency(days: Option<i64>) -> &'static str {
    match days {
        None => "soon",
        Some(d) if d < 7 => "soon",
        Some(d) if d < 30 => "warn",
        Some(_) => "ok",
    }
}

fn summary(out: &mut String, report: &StatusReport, now: i64) {
    let total = report.certificates.len();
    let soon = report
        .certificates
        .iter()
        .filter(|c| days_left(c, now).is_none_or(|d| d < 7))
        .count();
    let failing = report
        .certificates
        .iter()
        .filter(|c| c.failures > 0)
        .count();
    let _ = write!(
        out,
        "<p id=\"summary\">{total} certificate(s) · <span class=\"{}\">{soon} expiring within 7 days or missing</span> · {failing} failing · {} blocked key(s)</p>",
        if soon > 0 { "soon" } else { "ok" },
        report.blocked_keys.len()
    );
}

/// Certificates per day of remaining life, as bars: where the renewals
/// will bunch up, and anything near the left edge needs a look.
fn expiry_chart(out: &mut String, report: &StatusReport, now: i64) {
    let days: Vec<(i64, &str)> = report
        .certificates
        .iter()
        .filter_map(|c| days_left(c, now).map(|d| (d.max(0), c.name.as_str())))
        .collect();
    let span = days
        .iter()
        .map(|(d, _)| *d)
        .max()
        .unwrap_or(0)
        .clamp(30, 400)
        + 1;
    let mut per_day: Vec<Vec<&str>> = vec![Vec::new(); span as usize];
    for (d, name) in &days {
        if let Some(bucket) = per_day.get_mut(*d as usize) {
            bucket.push(name);
        }
    }
    let tallest = per_day.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let (width, height, left, bottom) = (760.0_f64, 160.0_f64, 30.0_f64, 20.0_f64);
    let bar = (width - left) / span as f64;
    let _ = write!(
        out,
        "<h2>Expiry timeline</h2><svg id=\"expiry-chart\" role=\"img\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\"><title>certificates by days until expiry</title>"
    );
    for (day, names) in per_day.iter().enumerate() {
        if names.is_empty() {
            continue;
        }
        let h = (height - bottom - 10.0) * names.len() as f64 / tallest as f64;
        let x = left + day as f64 * bar;
        let y = height - bottom - h;
        let class = urgency(Some(day as i64));
        let color = match class {
            "soon" => "#b00",
            "warn" => "#d80",
            _ => "#3a7",
        };
        let shown: Vec<&str> = names.iter().take(5).copied().collect();
        let more = names.len().saturating_sub(shown.len());
        let _ = write!(
            out,
            "<rect class=\"expiry-bar\" data-day=\"{day}\" data-count=\"{}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{color}\">\
             <title>{} in {day} day(s): {}{}</title></rect>",
            names.len(),
            (bar - 1.0).max(1.0),
            names.len(),
            esc(&shown.join(", ")),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        );
    }
    // Axis with a tick every 30 days.
    let base = height - bottom;
    let _ = write!(
        out,
        "<line x1=\"{left}\" y1=\"{base}\" x2=\"{width}\" y2=\"{base}\" stroke=\"#999\"/>"
    );
    let mut tick = 0;
    while tick < span {
        let x = left + tick as f64 * bar;
        let _ = write!(
            out,
            "<text x=\"{x:.1}\" y=\"{}\">{tick}d</text>",
            height - 6.0
        );
        tick += 30;
    }
    let _ = write!(out, "<text x=\"0\" y=\"12\">{tallest}</text></svg>");
}

fn certificates(out: &mut String, report: &StatusReport, now: i64) {
    let mut rows: Vec<(&CertStatus, Option<i64>)> = report
        .certificates
        .iter()
        .map(|c| (c, days_left(c, now)))
        .collect();
    // Soonest first; missing certificates first of all.
    rows.sort_by_key(|(c, d)| (d.unwrap_or(i64::MIN), c.name.as_str()));
    out.push_str(
        "<h2>Certificates</h2><table id=\"certificates\"><thead><tr><th>certificate</th><th>names</th>\
         <th>served</th><th>state</th><th>days left</th><th>issuer</th><th>renews</th><th>slots</th></tr></thead><tbody>",
    );
    for (c, days) in rows.iter().take(TABLE_ROWS) {
        let slots: Vec<String> = c
            .slots
            .iter()
            .map(|s| format!("{}: {}", s.slot.as_str(), s.state))
            .collect();
        let _ = write!(
            out,
            "<tr class=\"certificate\" data-name=\"{}\"><td class=\"name\">{}</td><td>{}</td><td class=\"served\">{}</td>\
             <td class=\"state\">{}</td><td class=\"days-left {}\" data-days=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&c.name),
            esc(&c.name),
            esc(&c.names.join(", ")),
            c.served.as_str(),
            esc(&c.state),
            urgency(*days),
            days.map(|d| d.to_string()).unwrap_or_default(),
            days.map(|d| d.to_string()).unwrap_or_else(|| "-".into()),
            esc(&c.issuer),
            esc(c.next_renewal.as_deref().unwrap_or("-")),
            esc(&slots.join("; ")),
        );
    }
    out.push_str("</tbody></table>");
    if rows.len() > TABLE_ROWS {
        let _ = write!(
            out,
            "<p>{} more: <a href=\"/api/v1/certificates\">/api/v1/certificates</a> has them all.</p>",
            rows.len() - TABLE_ROWS
        );
    }
}

fn budgets(out: &mut String, limits: &[certkeeper_agent::daemon::LimitStatus]) {
    out.push_str("<h2>Rate-limit budgets</h2><table id=\"limits\"><tbody>");
    for l in limits {
        if l.limit == "Retry-After" {
            let _ = write!(
                out,
                "<tr class=\"limit\"><td>{}</td><td>Retry-After</td><td>{}</td><td class=\"soon\">until {}</td></tr>",
                esc(&l.issuer),
                esc(&l.subject),
                esc(l.next_free.as_deref().unwrap_or("-"))
            );
            continue;
        }
        let pct = if l.max == 0 {
            100
        } else {
            (u64::from(l.used) * 100 / u64::from(l.max)).min(100)
        };
        let _ = write!(
            out,
            "<tr class=\"limit\"><td>{}</td><td>{}</td><td>{}</td>\
             <td><span class=\"bar\" title=\"{used} of {max} per {window}\"><span class=\"{full}\" style=\"width:{pct}%\"></span></span> \
             {used} / {max} per {window}</td></tr>",
            esc(&l.issuer),
            esc(&l.limit),
            esc(&l.subject),
            used = l.used,
            max = l.max,
            window = esc(&l.window),
            full = if pct >= 100 { "full" } else { "" },
        );
    }
    out.push_str("</tbody></table>");
}

fn recent_events(out: &mut String, events: &[certkeeper_store::EventRow]) {
    out.push_str("<h2>Recent events</h2><table id=\"events\"><tbody>");
    for e in events {
        let _ = write!(
            out,
            "<tr class=\"event\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            certkeeper_proto::clock::rfc3339(e.at),
            esc(&e.kind),
            esc(&e.name),
            esc(&e.slot),
            esc(&e.detail)
        );
    }
    out.push_str("</tbody></table>");
}

/// The built-in CA's issuance per hour over the last 48 hours.
fn ca_chart(out: &mut String, ca: &serde_json::Value, now: i64) {
    let first_hour = now / 3600 - 47;
    let mut per_hour = [0_i64; 48];
    for row in ca["issued_per_hour"].as_array().into_iter().flatten() {
        let (Some(hour), Some(n)) = (unix(row["hour"].as_str()), row["issued"].as_i64()) else {
            continue;
        };
        if let Some(slot) = usize::try_from(hour / 3600 - first_hour)
            .ok()
            .and_then(|i| per_hour.get_mut(i))
        {
            *slot = n;
        }
    }
    let tallest = per_hour.iter().copied().max().unwrap_or(0).max(1);
    let (width, height) = (760.0_f64, 120.0_f64);
    let bar = (width - 30.0) / 48.0;
    let _ = write!(
        out,
        "<h2>Built-in CA</h2><p>{} issued, {} revoked</p>\
         <svg id=\"ca-issuance-chart\" role=\"img\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\">\
         <title>certificates issued per hour, last 48 hours</title>",
        ca["issued_total"], ca["revoked_total"]
    );
    for (i, n) in per_hour.iter().enumerate() {
        if *n == 0 {
            continue;
        }
        let h = (height - 30.0) * *n as f64 / tallest as f64;
        let _ = write!(
            out,
            "<rect class=\"ca-bar\" data-count=\"{n}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"#47a\">\
             <title>{n} issued in the hour from {}</title></rect>",
            30.0 + i as f64 * bar,
            height - 20.0 - h,
            (bar - 1.0).max(1.0),
            certkeeper_proto::clock::rfc3339((first_hour + i as i64) * 3600)
        );
    }
    let _ = write!(
        out,
        "<text x=\"30\" y=\"{}\">48 h ago</text><text x=\"{}\" y=\"{}\">now</text><text x=\"0\" y=\"12\">{tallest}</text></svg>",
        height - 6.0,
        width - 24.0,
        height - 6.0
    );
}

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn markup_in_values_is_escaped() {
        assert_eq!(
            esc("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
    }
}
