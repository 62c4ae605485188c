//! Watching running workspaces for the signals of a looping or
//! misbehaving agent (paddock_api_types::signals): refusals piling up,
//! the same command failing again and again, CPU pinned, a full disk.
//! Fed by the sample loop every few seconds and by each command's end;
//! says which signals fire, once each time a condition starts to hold.
//! What firing does (the audit event, the metric, a stop or quarantine)
//! is the control service's.

use paddock_api_types::{SignalRule, SignalRules};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

/// Commands remembered per workspace (the most recently failing kept):
/// a guest running endless distinct commands cannot grow this.
const MAX_COMMANDS: usize = 64;

/// A signal that fired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fired {
    pub workspace: String,
    pub signal: &'static str,
    /// What was measured (count, or percent).
    pub value: u64,
    pub rule: SignalRule,
}

#[derive(Default)]
struct Watched {
    /// (time, total refusals) at each sample, as far back as the window.
    denied: VecDeque<(u64, u64)>,
    /// (time, total allowed lookups and connections) likewise.
    outbound: VecDeque<(u64, u64)>,
    /// Per command (its argv's digest): when it failed, within the window.
    failures: HashMap<String, VecDeque<u64>>,
    /// Since when CPU has been at or above the threshold.
    cpu_high_since: Option<u64>,
    /// Signals whose condition holds now (they fire again only after it
    /// stopped holding).
    holding: BTreeMap<&'static str, bool>,
    /// Times each signal fired, for the metric.
    fired: BTreeMap<&'static str, u64>,
}

impl Watched {
    /// Whether `signal` fires now that its condition is `holds`.
    fn edge(&mut self, signal: &'static str, holds: bool) -> bool {
        let was = self.holding.insert(signal, holds).unwrap_or(false);
        if holds && !was {
            *self.fired.entry(signal).or_default() += 1;
            return true;
        }
        false
    }
}

#[derive(Default)]
pub struct Watch {
    all: Mutex<HashMap<String, Watched>>,
}

/// What one sample measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct Measures {
    pub denied_total: u64,
    pub outbound_total: u64,
    pub cpu_pct: Option<f64>,
    pub disk_pct: Option<f64>,
}

/// How much a running total grew over the last `window_s` (its samples
/// kept as far back as that).
fn within(samples: &mut VecDeque<(u64, u64)>, now: u64, total: u64, window_s: u64) -> u64 {
    samples.push_back((now, total));
    while samples
        .front()
        .is_some_and(|(t, _)| now.saturating_sub(*t) > window_s)
    {
        samples.pop_front();
    }
    let oldest = samples.front().map_or(total, |(_, n)| *n);
    total.saturating_sub(oldest)
}

/// The rule in force for `signal`, unless it is off.
fn active(rules: &SignalRules, signal: &str) -> Option<SignalRule> {
    rules.rule(signal).filter(|r| !r.off)
}

impl Watch {
    /// One sample of workspace `id`: its refusals so far (all kinds
    /// together), what it was let out to so far, CPU (percent of its
    /// vCPUs) and disk (percent used).
    pub fn sample(&self, id: &str, rules: &SignalRules, now: u64, m: Measures) -> Vec<Fired> {
        let Measures {
            denied_total,
            outbound_total,
            cpu_pct,
            disk_pct,
        } = m;
        let mut all = self.all.lock().unwrap_or_else(|p| p.into_inner());
        let w = all.entry(id.to_string()).or_default();
        let mut fired = Vec::new();
        let mut fire = |w: &mut Watched, signal: &'static str, holds: bool, value, rule| {
            if w.edge(signal, holds) {
                fired.push(Fired {
                    workspace: id.to_string(),
                    signal,
                    value,
                    rule,
                });
            }
        };
        if let Some(rule) = active(rules, "denied_burst") {
            let recent = within(&mut w.denied, now, denied_total, rule.window_s);
            fire(w, "denied_burst", recent >= rule.threshold, recent, rule);
        }
        if let Some(rule) = active(rules, "outbound_rate") {
            let recent = within(&mut w.outbound, now, outbound_total, rule.window_s);
            fire(w, "outbound_rate", recent >= rule.threshold, recent, rule);
        }
        if let (Some(rule), Some(cpu)) = (active(rules, "cpu_pinned"), cpu_pct) {
            if cpu >= rule.threshold as f64 {
                let since = *w.cpu_high_since.get_or_insert(now);
                let held = now.saturating_sub(since);
                fire(w, "cpu_pinned", held >= rule.window_s, cpu as u64, rule);
            } else {
                w.cpu_high_since = None;
                fire(w, "cpu_pinned", false, cpu as u64, rule);
            }
        }
        if let (Some(rule), Some(disk)) = (active(rules, "disk_full"), disk_pct) {
            fire(
                w,
                "disk_full",
                disk >= rule.threshold as f64,
                disk as u64,
                rule,
            );
        }
        fired
    }

    /// A command (`command`: its argv's digest) ended in workspace `id`.
    pub fn command_ended(
        &self,
        id: &str,
        rules: &SignalRules,
        now: u64,
        command: &str,
        failed: bool,
    ) -> Option<Fired> {
        let rule = active(rules, "repeated_failure")?;
        let mut all = self.all.lock().unwrap_or_else(|p| p.into_inner());
        let w = all.entry(id.to_string()).or_default();
        if !failed {
            // It works now: its failures before this do not count.
            w.failures.remove(command);
        } else {
            if !w.failures.contains_key(command) && w.failures.len() >= MAX_COMMANDS {
                let stalest = w
                    .failures
                    .iter()
                    .min_by_key(|(_, times)| times.back().copied().unwrap_or(0))
                    .map(|(c, _)| c.clone());
                if let Some(c) = stalest {
                    w.failures.remove(&c);
                }
            }
            let times = w.failures.entry(command.to_string()).or_default();
            times.push_back(now);
            // More than the threshold adds nothing but memory.
            while times.len() > rule.threshold.min(10_000) as usize {
                times.pop_front();
            }
        }
        for times in w.failures.values_mut() {
            while times
                .front()
                .is_some_and(|t| now.saturating_sub(*t) > rule.window_s)
            {
                times.pop_front();
            }
        }
        w.failures.retain(|_, times| !times.is_empty());
        let worst = w.failures.values().map(VecDeque::len).max().unwrap_or(0) as u64;
        w.edge("repeated_failure", worst >= rule.threshold)
            .then(|| Fired {
                workspace: id.to_string(),
                signal: "repeated_failure",
                value: worst,
                rule,
            })
    }

    /// Forgets the workspaces not in `running`.
    pub fn keep_only(&self, running: &[&str]) {
        let mut all = self.all.lock().unwrap_or_else(|p| p.into_inner());
        all.retain(|id, _| running.contains(&id.as_str()));
    }

    /// (workspace, signal, times fired) for the metrics.
    pub fn counts(&self) -> Vec<(String, &'static str, u64)> {
        let all = self.all.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<_> = all
            .iter()
            .flat_map(|(id, w)| w.fired.iter().map(move |(s, n)| (id.clone(), *s, *n)))
            .collect();
        out.sort();
        out
    }
}

#[cfg(test)]
#[path = "signals_tests.rs"]
mod tests;
