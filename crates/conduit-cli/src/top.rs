//! `conduit top`: every IPC object on the machine, live — conduit's
//! mailboxes (depth, capacity, messages per second in and out, a
//! sparkline), names and their owners, connected peers, and the kernel's
//! System V and POSIX objects (depth, last operation) — refreshed every
//! `--interval`, sortable, with a filter. `--once` prints one snapshot
//! (rates over one interval) and exits; `--json` makes it JSON.
//!
//! Rates come from the broker's counts of each mailbox's messages in and
//! out since it was made (`Client::traffic`), read twice: the broker keeps
//! them on paths it takes anyway (a shared-memory mailbox's own queue
//! header counts what clients send and take there directly).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use conduit_broker::Client;
use serde::Serialize;

use crate::broker_cmd::{Object, fail, objects};

/// Options of `conduit top`.
#[derive(Args, Debug)]
pub struct TopArgs {
    /// Print one snapshot (rates over one interval) and exit.
    #[arg(long)]
    once: bool,
    /// With `--once`: JSON (`{"interval_s":…,"objects":[…],"warnings":[…]}`).
    #[arg(long, requires = "once")]
    json: bool,
    /// Seconds between refreshes, and the span of the rates.
    #[arg(long, default_value_t = 1.0, value_parser = interval)]
    interval: f64,
    /// Show only objects whose kind or id contains this text.
    #[arg(long, default_value = "")]
    filter: String,
    /// Order of the rows (the live view: `s` moves to the next).
    #[arg(long, value_enum, default_value_t = SortKey::Id)]
    sort: SortKey,
}

fn interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.05..=3600.0).contains(&v) => Ok(v),
        _ => Err("an interval in seconds, from 0.05 to 3600".into()),
    }
}

/// What rows are sorted by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SortKey {
    /// Kind, then id.
    Id,
    /// Messages queued, most first.
    Depth,
    /// Messages in per second, most first.
    In,
    /// Messages out per second, most first.
    Out,
}

impl SortKey {
    fn next(self) -> SortKey {
        match self {
            SortKey::Id => SortKey::Depth,
            SortKey::Depth => SortKey::In,
            SortKey::In => SortKey::Out,
            SortKey::Out => SortKey::Id,
        }
    }
    fn name(self) -> &'static str {
        match self {
            SortKey::Id => "id",
            SortKey::Depth => "depth",
            SortKey::In => "in/s",
            SortKey::Out => "out/s",
        }
    }
}

/// One row: an object as `conduit ls` shows it, and for a mailbox its
/// counts and rates.
#[derive(Debug, Serialize)]
pub struct Row {
    #[serde(flatten)]
    object: Object,
    /// Messages in since the mailbox was made (mailboxes; else `null`).
    sent: Option<u64>,
    /// Messages taken for good since it was made.
    received: Option<u64>,
    /// Messages in per second over the last interval.
    msgs_in_per_s: Option<f64>,
    /// Messages out per second over the last interval.
    msgs_out_per_s: Option<f64>,
}

/// One look at everything.
struct Snapshot {
    at: Instant,
    objects: Vec<Object>,
    traffic: HashMap<String, (u64, u64)>,
    warnings: Vec<String>,
}

fn look(broker: &mut Option<Client>) -> Result<Snapshot, conduit_broker::ClientError> {
    if broker.is_none() {
        // Only a running broker: looking must not start one.
        *broker = Client::connect().ok();
    }
    let traffic = match broker.as_ref().map(|c| c.traffic()) {
        Some(Ok(t)) => t.into_iter().map(|t| (t.name, (t.sent, t.received))).collect(),
        Some(Err(_)) => {
            // The broker went away: look without it, and again next time.
            *broker = None;
            HashMap::new()
        }
        None => HashMap::new(),
    };
    let at = Instant::now();
    let (objects, warnings) = match objects(broker.as_ref()) {
        Ok(o) => o,
        Err(_) if broker.is_some() => {
            *broker = None;
            objects(None)?
        }
        Err(e) => return Err(e),
    };
    Ok(Snapshot { at, objects, traffic, warnings })
}

/// Rows of `now`, with rates against `before`, filtered and sorted.
fn rows(before: &Snapshot, now: Snapshot, filter: &str, sort: SortKey) -> (Vec<Row>, Vec<String>) {
    let dt = now.at.duration_since(before.at).as_secs_f64().max(1e-9);
    let mut rows: Vec<Row> = now
        .objects
        .into_iter()
        .filter(|o| filter.is_empty() || o.kind.contains(filter) || o.id.contains(filter))
        .map(|object| {
            let counts = (object.source == "conduit" && object.kind == "mailbox")
                .then(|| now.traffic.get(&object.id).copied())
                .flatten();
            let rate = |f: fn(&(u64, u64)) -> u64| {
                let (c, b) = (counts?, before.traffic.get(&object.id)?);
                Some(f(&c).saturating_sub(f(b)) as f64 / dt)
            };
            let (msgs_in_per_s, msgs_out_per_s) = (rate(|c| c.0), rate(|c| c.1));
            Row { sent: counts.map(|c| c.0), received: counts.map(|c| c.1), msgs_in_per_s, msgs_out_per_s, object }
        })
        .collect();
    let desc = |v: Option<f64>| std::cmp::Reverse((v.unwrap_or(-1.0) * 1000.0) as i64);
    match sort {
        SortKey::Id => rows.sort_by(|a, b| (&a.object.kind, &a.object.id).cmp(&(&b.object.kind, &b.object.id))),
        SortKey::Depth => rows.sort_by_key(|r| std::cmp::Reverse(r.object.depth)),
        SortKey::In => rows.sort_by_key(|r| desc(r.msgs_in_per_s)),
        SortKey::Out => rows.sort_by_key(|r| desc(r.msgs_out_per_s)),
    }
    (rows, now.warnings)
}

pub fn run(a: &TopArgs) -> ExitCode {
    let mut broker = None;
    let every = Duration::from_secs_f64(a.interval);
    let first = match look(&mut broker) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if !a.once {
        return live::run(broker, first, every, a.filter.clone(), a.sort);
    }
    std::thread::sleep(every);
    let now = match look(&mut broker) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let (rows, warnings) = rows(&first, now, &a.filter, a.sort);
    if a.json {
        let out = serde_json::json!({ "interval_s": a.interval, "objects": rows, "warnings": warnings });
        println!("{out}");
        return ExitCode::SUCCESS;
    }
    for w in &warnings {
        eprintln!("conduit: {w}");
    }
    println!("{}", header());
    for r in &rows {
        println!("{}", line(r));
    }
    ExitCode::SUCCESS
}

fn header() -> String {
    format!(
        "{:<8} {:<9} {:<28} {:>7} {:>9} {:>10} {:>10} {:>6} {:<20}",
        "source", "kind", "id", "depth", "capacity", "in/s", "out/s", "owner", "last"
    )
}

fn line(r: &Row) -> String {
    let o = &r.object;
    let rate = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}"));
    format!(
        "{:<8} {:<9} {:<28} {:>7} {:>9} {:>10} {:>10} {:>6} {:<20}",
        o.source,
        o.kind,
        o.id,
        o.depth,
        o.capacity.map_or("-".into(), |c| c.to_string()),
        rate(r.msgs_in_per_s),
        rate(r.msgs_out_per_s),
        o.owner,
        last_operation(&o.times, &o.last_pids),
    )
}

/// A kernel object's last operation: its latest time by role, and the
/// pid that did it, if known.
fn last_operation(times: &BTreeMap<&'static str, i64>, pids: &BTreeMap<&'static str, u32>) -> String {
    let Some((what, when)) = times.iter().filter(|(_, t)| **t > 0).max_by_key(|(_, t)| **t) else {
        return String::new();
    };
    let ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
        .saturating_sub(*when);
    let pid = match *what {
        "send" => pids.get("last_send"),
        "recv" => pids.get("last_recv"),
        _ => pids.get("last"),
    };
    match pid {
        Some(p) if *p > 0 => format!("{what} {ago}s ago, pid {p}"),
        _ => format!("{what} {ago}s ago"),
    }
}

mod live {
    //! The live view: a table refreshed every interval, a sparkline of the
    //! selected mailbox's messages in per second. Keys: `q` or Esc quits,
    //! `s` sorts by the next column, `/` edits the filter (Enter ends),
    //! arrows move the selection.

    use super::*;
    use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind};
    use ratatui::layout::{Constraint, Layout};
    use ratatui::style::{Modifier, Style};
    use ratatui::widgets::{Block, Borders, Paragraph, Row as TableRow, Sparkline, Table, TableState};

    /// Rates remembered per mailbox for its sparkline.
    const HISTORY: usize = 120;

    pub fn run(
        mut broker: Option<Client>,
        first: Snapshot,
        every: Duration,
        mut filter: String,
        mut sort: SortKey,
    ) -> ExitCode {
        use std::io::IsTerminal;
        if !std::io::stdout().is_terminal() {
            eprintln!(
                "conduit top: the live view needs a terminal on standard output; for scripts: conduit top --once [--json]"
            );
            return ExitCode::from(2);
        }
        let mut terminal = match ratatui::try_init() {
            Ok(t) => t,
            Err(e) => {
                eprintln!("conduit top: cannot take over the terminal ({e}); for scripts: conduit top --once [--json]");
                return ExitCode::FAILURE;
            }
        };
        let mut before = first;
        let mut shown: Vec<Row> = Vec::new();
        let mut warnings: Vec<String> = Vec::new();
        let mut history: HashMap<String, VecDeque<u64>> = HashMap::new();
        let mut table = TableState::default().with_selected(Some(0));
        let mut editing = false;
        let mut next = Instant::now();
        let result = loop {
            if Instant::now() >= next {
                let now = match look(&mut broker) {
                    Ok(s) => s,
                    Err(e) => break Err(e.to_string()),
                };
                let at = now.at;
                let traffic = now.traffic.clone();
                let objects_again = now.objects.iter().map(|o| o.id.clone()).collect::<Vec<_>>();
                let (r, w) = rows(&before, now, &filter, sort);
                for row in &r {
                    if let Some(v) = row.msgs_in_per_s {
                        let h = history.entry(row.object.id.clone()).or_default();
                        h.push_back(v as u64);
                        if h.len() > HISTORY {
                            h.pop_front();
                        }
                    }
                }
                history.retain(|id, _| objects_again.contains(id));
                shown = r;
                warnings = w;
                before = Snapshot { at, objects: Vec::new(), traffic, warnings: Vec::new() };
                next = Instant::now() + every;
            }
            let draw = terminal.draw(|f| {
                let [head, body, spark, foot] = Layout::vertical([
                    Constraint::Length(1),
                    Constraint::Min(3),
                    Constraint::Length(5),
                    Constraint::Length(1),
                ])
                .areas(f.area());
                let title = format!(
                    "conduit top — {} objects, sorted by {}, every {:.1} s{}",
                    shown.len(),
                    sort.name(),
                    every.as_secs_f64(),
                    if filter.is_empty() { String::new() } else { format!(", filter \"{filter}\"") }
                );
                f.render_widget(Paragraph::new(title), head);
                let rate = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}"));
                let rows = shown.iter().map(|r| {
                    let o = &r.object;
                    TableRow::new(vec![
                        o.source.to_string(),
                        o.kind.clone(),
                        o.id.clone(),
                        o.depth.to_string(),
                        o.capacity.map_or("-".into(), |c| c.to_string()),
                        rate(r.msgs_in_per_s),
                        rate(r.msgs_out_per_s),
                        o.owner.to_string(),
                        o.pids.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(","),
                        last_operation(&o.times, &o.last_pids),
                    ])
                });
                let widths = [
                    Constraint::Length(8),
                    Constraint::Length(9),
                    Constraint::Min(16),
                    Constraint::Length(7),
                    Constraint::Length(9),
                    Constraint::Length(9),
                    Constraint::Length(9),
                    Constraint::Length(6),
                    Constraint::Length(12),
                    Constraint::Length(24),
                ];
                let header = TableRow::new(vec![
                    "source", "kind", "id", "depth", "capacity", "in/s", "out/s", "owner", "pids", "last",
                ])
                .style(Style::new().add_modifier(Modifier::BOLD));
                let t = Table::new(rows, widths)
                    .header(header)
                    .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
                    .block(Block::new().borders(Borders::TOP));
                f.render_stateful_widget(t, body, &mut table);
                let selected = table.selected().and_then(|i| shown.get(i));
                let (label, data): (String, Vec<u64>) = match selected {
                    Some(r) if r.msgs_in_per_s.is_some() => (
                        format!("{}: messages in per second", r.object.id),
                        history.get(&r.object.id).map(|h| h.iter().copied().collect()).unwrap_or_default(),
                    ),
                    _ => ("select a mailbox for its rate".into(), Vec::new()),
                };
                f.render_widget(
                    Sparkline::default().block(Block::new().borders(Borders::TOP).title(label)).data(&data),
                    spark,
                );
                let foot_text = if editing {
                    format!("filter: {filter}▏ (Enter: done)")
                } else if let Some(w) = warnings.first() {
                    format!("q: quit  s: sort  /: filter  ↑↓: select — {w}")
                } else {
                    "q: quit  s: sort  /: filter  ↑↓: select".into()
                };
                f.render_widget(Paragraph::new(foot_text), foot);
            });
            if let Err(e) = draw {
                break Err(e.to_string());
            }
            let wait = next.saturating_duration_since(Instant::now()).min(Duration::from_millis(250));
            match event::poll(wait) {
                Ok(false) => continue,
                Ok(true) => {}
                Err(e) => break Err(e.to_string()),
            }
            let key = match event::read() {
                Ok(Event::Key(k)) if k.kind == KeyEventKind::Press => k,
                Ok(_) => continue,
                Err(e) => break Err(e.to_string()),
            };
            if editing {
                match key.code {
                    KeyCode::Enter | KeyCode::Esc => editing = false,
                    KeyCode::Backspace => drop(filter.pop()),
                    KeyCode::Char(c) => filter.push(c),
                    _ => {}
                }
                continue;
            }
            match key.code {
                KeyCode::Char('q') | KeyCode::Esc => break Ok(()),
                // Both apply from the next refresh (rates need a whole
                // interval).
                KeyCode::Char('s') => sort = sort.next(),
                KeyCode::Char('/') => editing = true,
                KeyCode::Down => table.select_next(),
                KeyCode::Up => table.select_previous(),
                _ => {}
            }
        };
        ratatui::restore();
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("conduit top: {e}");
                ExitCode::FAILURE
            }
        }
    }
}
