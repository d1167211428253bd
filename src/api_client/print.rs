//! The tables the API client prints: remotes' status, a page of tasks, an entity's
//! metric history and a trigger's results, each from the API's JSON.

use serde_json::Value;

/// A time relative to `now`: `12s ago`, `in 3s`, or `-` when unknown.
fn ago(now: i64, ts: Option<i64>) -> String {
    match ts {
        None => "-".into(),
        Some(t) if now >= t => format!("{}s ago", now - t),
        Some(t) => format!("in {}s", t - now),
    }
}

/// Prints the remotes' status as a table.
pub(super) fn status(value: &Value) {
    let now = fleetpoll_actors::system_now_secs();
    println!(
        "{:<20} {:<5} {:<9} {:<7} {:>5} {:>12} {:>12} {:>10}  LAST ERROR / HEALTH REASON",
        "REMOTE", "KIND", "STATE", "HEALTH", "FAILS", "LAST OK", "NEXT TRY", "POINTS"
    );
    for r in value["remotes"].as_array().into_iter().flatten() {
        let error: String = r["last_error"]
            .as_str()
            .or(r["health_reason"].as_str())
            .unwrap_or("")
            .chars()
            .take(60)
            .collect();
        println!(
            "{:<20} {:<5} {:<9} {:<7} {:>5} {:>12} {:>12} {:>10}  {}",
            r["remote"].as_str().unwrap_or("?"),
            r["kind"].as_str().unwrap_or("?"),
            r["state"].as_str().unwrap_or("?"),
            r["health"].as_str().unwrap_or("-"),
            r["consecutive_failures"].as_u64().unwrap_or(0),
            ago(now, r["last_success"].as_i64()),
            ago(now, r["next_attempt"].as_i64()),
            r["points_stored"].as_u64().unwrap_or(0),
            error
        );
    }
}

/// Prints a page of tasks as a table.
pub(super) fn tasks(value: &Value) {
    println!(
        "{:<10} {:<10} {:<14} {:<20} {:<8} {:<16} STATUS",
        "STARTED", "REMOTE", "NODE", "TYPE", "ID", "USER"
    );
    for t in value["tasks"].as_array().into_iter().flatten() {
        let status = match t["status"].as_str() {
            Some(s) => s.to_string(),
            None => "running".to_string(),
        };
        println!(
            "{:<10} {:<10} {:<14} {:<20} {:<8} {:<16} {}",
            t["starttime"],
            t["remote"].as_str().unwrap_or("?"),
            t["node"].as_str().unwrap_or("?"),
            t["type"].as_str().unwrap_or("?"),
            t["id"].as_str().unwrap_or(""),
            t["user"].as_str().unwrap_or("?"),
            status
        );
    }
    let shown = value["tasks"].as_array().map_or(0, Vec::len);
    println!("({shown} of {} matching tasks)", value["total"]);
}

/// Prints an entity's history as one line per metric: points known, last, min, mean, max.
pub(super) fn history(value: &Value) {
    let data = &value["data"];
    let rows = data["timestamps"].as_array().map_or(0, Vec::len);
    println!(
        "{} {} ({}, {} rows of {} s from {})",
        value["remote"].as_str().unwrap_or("?"),
        value["entity"].as_str().unwrap_or("?"),
        value["cf"].as_str().unwrap_or("?"),
        rows,
        data["step"],
        data["start"]
    );
    println!(
        "{:<16} {:>6} {:>14} {:>14} {:>14} {:>14}",
        "METRIC", "KNOWN", "LAST", "MIN", "MEAN", "MAX"
    );
    for m in data["metrics"].as_array().into_iter().flatten() {
        let known: Vec<f64> = m["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_f64)
            .collect();
        let fmt = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.4}"));
        let mean = (!known.is_empty()).then(|| known.iter().sum::<f64>() / known.len() as f64);
        println!(
            "{:<16} {:>6} {:>14} {:>14} {:>14} {:>14}",
            m["name"].as_str().unwrap_or("?"),
            known.len(),
            fmt(known.last().copied()),
            fmt(known.iter().copied().reduce(f64::min)),
            fmt(mean),
            fmt(known.iter().copied().reduce(f64::max)),
        );
    }
}

/// Prints a trigger's per-remote results.
pub(super) fn trigger(value: &Value, waited: bool) {
    let results = value["results"].as_array().cloned().unwrap_or_default();
    if !waited && results.is_empty() {
        println!("collection queued");
        return;
    }
    for r in results {
        let remote = r["remote"].as_str().unwrap_or("?");
        if r["ok"] == true {
            let res = &r["result"];
            match res["outcome"].as_str() {
                Some("stored") => println!(
                    "{remote}: stored {} points, newest {}",
                    res["points"], res["cursor"]
                ),
                _ => println!(
                    "{remote}: skipped ({})",
                    res["reason"].as_str().unwrap_or("?")
                ),
            }
        } else {
            println!("{remote}: failed: {}", r["error"].as_str().unwrap_or("?"));
        }
    }
}
