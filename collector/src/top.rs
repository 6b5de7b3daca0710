//! `observatory top`: the live page's numbers in a terminal, read from a
//! collector's `observatory_ui` API (`/api/view`) once a second.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Row, Table};
use ratatui::Frame;
use serde_json::Value;

/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(2);

/// `host:port` and path prefix of an `http://` URL.
fn split_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("--url {url:?}: only http:// URLs are supported"))?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    if host.is_empty() {
        return Err(format!("--url {url:?}: no host"));
    }
    let path = path.trim_end_matches('/');
    let prefix = if path.is_empty() {
        String::new()
    } else {
        format!("/{path}")
    };
    Ok((host.to_string(), prefix))
}

/// Undoes `Transfer-Encoding: chunked`.
fn unchunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = body.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&body[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 || body.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&body[eol + 2..eol + 2 + size]);
        body = &body[(eol + 4 + size).min(body.len())..];
    }
    out
}

/// GETs `/api/view` from the collector at `url`.
pub fn fetch(url: &str) -> Result<Value, String> {
    let (host, prefix) = split_url(url)?;
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&host)
        .map_err(|e| format!("{host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host}: no address"))?;
    let mut s =
        TcpStream::connect_timeout(&addr, FETCH_TIMEOUT).map_err(|e| format!("{host}: {e}"))?;
    s.set_read_timeout(Some(FETCH_TIMEOUT)).ok();
    write!(
        s,
        "GET {prefix}/api/view HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("{host}: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("{host}: {e}"))?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("the answer is not HTTP")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    if !head.starts_with("http/1.1 200") {
        let status = head.lines().next().unwrap_or("").to_string();
        return Err(format!(
            "{url}/api/view answered {status:?}: is observatory_ui enabled there?"
        ));
    }
    let body = &raw[split + 4..];
    let body = if head.contains("transfer-encoding: chunked") {
        unchunk(body)
    } else {
        body.to_vec()
    };
    serde_json::from_slice(&body).map_err(|e| format!("{url}/api/view: not the view JSON: {e}"))
}

fn rate(v: &Value) -> String {
    let x = v.as_f64().unwrap_or(0.0);
    if x >= 1e6 {
        format!("{:.1}M", x / 1e6)
    } else if x >= 1e4 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

fn fill(v: &Value) -> String {
    v.as_f64()
        .map_or("–".into(), |f| format!("{:.0}%", f * 100.0))
}

fn state_style(s: &str) -> Style {
    match s {
        "red" => Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
        "amber" => Style::default().fg(Color::Yellow),
        _ => Style::default(),
    }
}

/// The component rows, busiest first.
fn component_rows(view: &Value) -> Vec<Row<'static>> {
    let mut nodes: Vec<&Value> = view["nodes"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    nodes.sort_by(|a, b| {
        let load = |n: &Value| n["in_rate"].as_f64().unwrap_or(0.0);
        load(b).total_cmp(&load(a))
    });
    nodes
        .into_iter()
        .map(|n| {
            let kind = n["kind"].as_str().unwrap_or("");
            let mut name = n["name"].as_str().unwrap_or("").to_string();
            if kind == "processor" {
                name = format!("{name} ({})", n["pipelines"][0].as_str().unwrap_or(""));
            }
            let state = n["state"].as_str().unwrap_or("ok").to_string();
            Row::new(vec![
                kind.to_string(),
                name,
                rate(&n["in_rate"]),
                rate(&n["out_rate"]),
                fill(&n["queue_fill"]),
                rate(&n["refused_rate"]),
                state.clone(),
            ])
            .style(state_style(&state))
        })
        .collect()
}

fn exporter_lines(view: &Value) -> Vec<Line<'static>> {
    let empty = Vec::new();
    view["exporters"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|e| {
            let err = e["last_error"].as_str().map_or(String::new(), |t| {
                format!(
                    "  last error {:.0} s ago: {t}",
                    e["last_error_age_s"].as_f64().unwrap_or(0.0)
                )
            });
            Line::from(format!(
                "{:<24} sent {}/s  in flight {}  retries {}/s  failed {}/s{err}",
                e["id"].as_str().unwrap_or(""),
                rate(&e["sent_rate"]),
                rate(&e["in_flight"]),
                rate(&e["retries_rate"]),
                rate(&e["failed_rate"]),
            ))
        })
        .collect()
}

fn llm_rows(view: &Value) -> Vec<Row<'static>> {
    let empty = Vec::new();
    view["llm"]["1m"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|r| {
            Row::new(vec![
                r["model"].as_str().unwrap_or("").to_string(),
                r["source"].as_str().unwrap_or("").to_string(),
                rate(&r["calls"]),
                rate(&r["input_tokens"]),
                rate(&r["output_tokens"]),
                format!("${:.4}", r["cost_usd"].as_f64().unwrap_or(0.0)),
                format!("{:.0} ms", r["mean_latency_ms"].as_f64().unwrap_or(0.0)),
            ])
        })
        .collect()
}

fn draw(f: &mut Frame, url: &str, view: Option<&Value>, error: Option<&str>) {
    let [head, comps, exps, llm, foot] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(6),
        Constraint::Length(6),
        Constraint::Length(9),
        Constraint::Length(1),
    ])
    .areas(f.area());
    let summary = match (view, error) {
        (_, Some(e)) => format!("observatory top — {url} — {e}"),
        (Some(v), None) => format!(
            "observatory top — {url} — up {:.0} s — RSS {:.0} MiB — CPU {:.0}%",
            v["uptime_s"].as_f64().unwrap_or(0.0),
            v["process"]["rss_bytes"].as_f64().unwrap_or(0.0) / 1048576.0,
            v["process"]["cpu_percent"].as_f64().unwrap_or(0.0),
        ),
        (None, None) => format!("observatory top — {url} — connecting…"),
    };
    f.render_widget(
        Paragraph::new(summary).style(Style::default().add_modifier(Modifier::BOLD)),
        head,
    );
    let Some(v) = view else { return };
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let table = Table::new(
        component_rows(v),
        [
            Constraint::Length(10),
            Constraint::Min(24),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(7),
            Constraint::Length(10),
            Constraint::Length(6),
        ],
    )
    .header(
        Row::new([
            "kind",
            "component",
            "in/s",
            "out/s",
            "queue",
            "refused/s",
            "state",
        ])
        .style(bold),
    )
    .block(Block::bordered().title(" components, busiest first "));
    f.render_widget(table, comps);
    f.render_widget(
        Paragraph::new(exporter_lines(v)).block(Block::bordered().title(" exporters ")),
        exps,
    );
    let llm_table = Table::new(
        llm_rows(v),
        [
            Constraint::Min(20),
            Constraint::Length(16),
            Constraint::Length(8),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(10),
        ],
    )
    .header(
        Row::new([
            "model",
            "source",
            "calls",
            "tokens in",
            "tokens out",
            "cost",
            "latency",
        ])
        .style(bold),
    )
    .block(Block::bordered().title(" LLM calls, last minute "));
    f.render_widget(llm_table, llm);
    f.render_widget(Paragraph::new("q quits · refreshes every second"), foot);
}

/// Runs the terminal view until `q`, Esc or Ctrl-C.
pub fn run(url: &str) -> Result<(), String> {
    split_url(url)?;
    let mut terminal = ratatui::init();
    let result = (|| -> Result<(), String> {
        let mut view: Option<Value> = None;
        let mut next = Instant::now();
        loop {
            if Instant::now() >= next {
                let error = match fetch(url) {
                    Ok(v) => {
                        view = Some(v);
                        None
                    }
                    Err(e) => Some(e),
                };
                next = Instant::now() + Duration::from_secs(1);
                terminal
                    .draw(|f| draw(f, url, view.as_ref(), error.as_deref()))
                    .map_err(|e| e.to_string())?;
            }
            let wait = next.saturating_duration_since(Instant::now());
            if event::poll(wait).map_err(|e| e.to_string())? {
                if let Event::Key(k) = event::read().map_err(|e| e.to_string())? {
                    let ctrl_c =
                        k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                    if k.kind == KeyEventKind::Press
                        && (k.code == KeyCode::Char('q') || k.code == KeyCode::Esc || ctrl_c)
                    {
                        return Ok(());
                    }
                }
            }
        }
    })();
    ratatui::restore();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_chunked_bodies() {
        assert_eq!(
            split_url("http://h:1").unwrap(),
            ("h:1".into(), String::new())
        );
        assert_eq!(
            split_url("http://h:1/ui/").unwrap(),
            ("h:1".into(), "/ui".into())
        );
        assert!(split_url("https://h:1")
            .unwrap_err()
            .contains("only http://"));
        assert_eq!(unchunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), b"abcde");
    }
}
