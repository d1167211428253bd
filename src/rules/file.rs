//! The rules file: its TOML shape (unknown keys rejected), the validation that names the
//! rule and the key, and the compiled [`RuleSet`] the engine evaluates — globs built
//! once, thresholds per entity resolved through the overrides.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fleetpoll_actors::PollState;
use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

use crate::config::{key_at, ConfigFileError, Secret};

/// One glob or a list of globs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Globs {
    /// One pattern.
    One(String),
    /// Any of these patterns.
    Many(Vec<String>),
}

impl Globs {
    fn patterns(&self) -> Vec<&str> {
        match self {
            Globs::One(p) => vec![p.as_str()],
            Globs::Many(ps) => ps.iter().map(String::as_str).collect(),
        }
    }
}

fn every_remote() -> Globs {
    Globs::One("*".into())
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Op {
    /// Above.
    #[serde(rename = ">")]
    Gt,
    /// At or above.
    #[serde(rename = ">=")]
    Ge,
    /// Below.
    #[serde(rename = "<")]
    Lt,
    /// At or below.
    #[serde(rename = "<=")]
    Le,
}

impl Op {
    /// Whether `value op threshold` holds.
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Gt => value > threshold,
            Op::Ge => value >= threshold,
            Op::Lt => value < threshold,
            Op::Le => value <= threshold,
        }
    }

    fn is_upper(self) -> bool {
        matches!(self, Op::Gt | Op::Ge)
    }
}

/// How bad a firing alert is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Needs a look.
    #[default]
    Warning,
    /// Needs action now.
    Critical,
}

/// A per-entity threshold of a metric rule.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideDef {
    /// The entities it applies to (the first matching override wins).
    pub entities: Globs,
    /// Their threshold.
    pub threshold: f64,
    /// Their clear threshold (default: their own threshold).
    pub clear_threshold: Option<f64>,
}

/// One `[[rules]]` table as written.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDef {
    /// Unique name.
    pub name: String,
    /// Remote ids it applies to.
    #[serde(default = "every_remote")]
    pub remotes: Globs,
    /// Entity ids (metric rules); `*` stays within a path segment, `**` crosses `/`.
    pub entities: Option<Globs>,
    /// The metric compared (metric rules).
    pub metric: Option<String>,
    /// Compare `metric / of` instead.
    pub of: Option<String>,
    /// The comparison.
    pub op: Option<Op>,
    /// Fire when the comparison holds against this.
    pub threshold: Option<f64>,
    /// Resolve once the comparison no longer holds against this (default: threshold).
    pub clear_threshold: Option<f64>,
    /// How long the condition must hold, in sample time (state rules: wall time).
    #[serde(default)]
    pub for_secs: u64,
    /// How bad it is.
    #[serde(default)]
    pub severity: Severity,
    /// Labels carried by its alerts.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Per-entity thresholds.
    #[serde(default)]
    pub overrides: Vec<OverrideDef>,
    /// Collection states that make a state rule hold.
    pub state: Option<Vec<PollState>>,
}

/// One `[[webhooks]]` table as written.
#[derive(Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookDef {
    /// A name for logs and status (the URL is a secret); default `webhook-N`.
    pub name: Option<String>,
    /// Where alerts are POSTed (a secret: never logged).
    pub url: Secret,
    /// Extra request headers (secrets: never logged).
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Per request.
    #[serde(default = "d_timeout")]
    pub timeout_secs: u64,
    /// Notifications waiting to be sent; beyond it new ones are dropped and counted.
    #[serde(default = "d_queue")]
    pub queue_max: usize,
    /// Attempts per notification before it is given up (counted).
    #[serde(default = "d_attempts")]
    pub max_attempts: u32,
}

impl fmt::Debug for WebhookDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookDef")
            .field("name", &self.name)
            .field("url", &"<redacted>")
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

fn d_timeout() -> u64 {
    5
}
fn d_queue() -> usize {
    1000
}
fn d_attempts() -> u32 {
    5
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    rules: Vec<RuleDef>,
    #[serde(default)]
    webhooks: Vec<WebhookDef>,
}

/// What a metric rule compares.
#[derive(Debug)]
pub struct MetricRule {
    entities: GlobSet,
    /// The metric.
    pub metric: Arc<str>,
    /// The denominator of a ratio.
    pub of: Option<Arc<str>>,
    /// The comparison.
    pub op: Op,
    threshold: f64,
    clear: f64,
    overrides: Vec<(GlobSet, f64, f64)>,
}

impl MetricRule {
    /// Whether the rule covers `entity`, and with which override (`None`: the rule's own).
    pub fn matches(&self, entity: &str) -> Option<Option<u16>> {
        if !self.entities.is_match(entity) {
            return None;
        }
        Some(
            self.overrides
                .iter()
                .position(|(g, _, _)| g.is_match(entity))
                .map(|i| i as u16),
        )
    }

    /// The threshold and clear threshold that apply with `over`ride.
    pub fn thresholds(&self, over: Option<u16>) -> (f64, f64) {
        match over.and_then(|i| self.overrides.get(i as usize)) {
            Some(&(_, t, c)) => (t, c),
            None => (self.threshold, self.clear),
        }
    }
}

/// What a rule evaluates.
#[derive(Debug)]
pub enum RuleKind {
    /// A metric (or ratio) against a threshold.
    Metric(MetricRule),
    /// A remote's collection state.
    State(Vec<PollState>),
}

/// One compiled rule.
#[derive(Debug)]
pub struct Rule {
    /// Its unique name.
    pub name: Arc<str>,
    /// As written (a reload compares these).
    pub def: RuleDef,
    remotes: GlobSet,
    /// What it evaluates.
    pub kind: RuleKind,
    /// `for_secs`.
    pub hold: i64,
    /// Labels as JSON-ready pairs.
    pub labels: Arc<BTreeMap<String, String>>,
}

impl Rule {
    /// Whether the rule covers `remote`.
    pub fn covers_remote(&self, remote: &str) -> bool {
        self.remotes.is_match(remote)
    }
}

/// A compiled webhook.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookTarget {
    /// Its name (for logs and status).
    pub name: String,
    /// As written.
    pub def: WebhookDef,
    /// `timeout_secs`.
    pub timeout: Duration,
}

/// A whole rules file, compiled.
#[derive(Debug, Default)]
pub struct RuleSet {
    /// The file it came from (`None`: no rules file is configured).
    pub path: Option<PathBuf>,
    /// The rules, in file order.
    pub rules: Vec<Arc<Rule>>,
    /// The webhooks.
    pub webhooks: Vec<WebhookTarget>,
}

fn fail(file: &Path, key: String, message: impl Into<String>) -> ConfigFileError {
    ConfigFileError {
        file: file.to_path_buf(),
        key,
        message: message.into(),
    }
}

fn globs(file: &Path, key: &str, rule: &str, g: &Globs) -> Result<GlobSet, ConfigFileError> {
    let mut set = GlobSetBuilder::new();
    let patterns = g.patterns();
    if patterns.is_empty() {
        return Err(fail(
            file,
            key.into(),
            format!("rule {rule:?}: needs at least one glob"),
        ));
    }
    for p in patterns {
        let glob: Glob = GlobBuilder::new(p)
            .literal_separator(true)
            .build()
            .map_err(|e| {
                fail(
                    file,
                    key.into(),
                    format!("rule {rule:?}: bad glob {p:?}: {e}"),
                )
            })?;
        set.add(glob);
    }
    set.build()
        .map_err(|e| fail(file, key.into(), format!("rule {rule:?}: {e}")))
}

fn check_clear(
    file: &Path,
    key: String,
    rule: &str,
    op: Op,
    threshold: f64,
    clear: Option<f64>,
) -> Result<f64, ConfigFileError> {
    let Some(clear) = clear else {
        return Ok(threshold);
    };
    if !clear.is_finite() {
        return Err(fail(
            file,
            key,
            format!("rule {rule:?}: must be a finite number"),
        ));
    }
    let wrong_side = if op.is_upper() {
        clear > threshold
    } else {
        clear < threshold
    };
    if wrong_side {
        let side = if op.is_upper() { "at most" } else { "at least" };
        return Err(fail(
            file,
            key,
            format!("rule {rule:?}: must be {side} the threshold {threshold} (it is where a firing alert resolves)"),
        ));
    }
    Ok(clear)
}

/// Longest hold a rule may ask for: 30 days.
const MAX_HOLD_SECS: u64 = 30 * 86_400;

fn compile_rule(file: &Path, i: usize, def: &RuleDef) -> Result<Rule, ConfigFileError> {
    let at = |k: &str| format!("rules[{i}].{k}");
    let name = def.name.as_str();
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(fail(
            file,
            at("name"),
            format!("{name:?} must be 1 to 64 letters, digits, '-', '_' or '.'"),
        ));
    }
    if def.for_secs > MAX_HOLD_SECS {
        return Err(fail(
            file,
            at("for_secs"),
            format!(
                "rule {name:?}: must be at most {MAX_HOLD_SECS} (30 days), not {}",
                def.for_secs
            ),
        ));
    }
    for (k, v) in &def.labels {
        let good_key = k
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !good_key || v.len() > 256 {
            return Err(fail(
                file,
                at(&format!("labels.{k}")),
                format!("rule {name:?}: a label name is letters, digits and '_' (not starting with a digit), its value at most 256 bytes"),
            ));
        }
    }
    let remotes = globs(file, &at("remotes"), name, &def.remotes)?;
    let kind = match (&def.state, &def.metric) {
        (Some(_), Some(_)) => {
            return Err(fail(
                file,
                at("state"),
                format!("rule {name:?}: a rule is either on a metric or on a remote's state; remove `state` or `metric`"),
            ))
        }
        (None, None) => {
            return Err(fail(
                file,
                at("metric"),
                format!("rule {name:?}: needs `metric` (with `op` and `threshold`) or `state`"),
            ))
        }
        (Some(states), None) => {
            for (k, present) in [
                ("entities", def.entities.is_some()),
                ("of", def.of.is_some()),
                ("op", def.op.is_some()),
                ("threshold", def.threshold.is_some()),
                ("clear_threshold", def.clear_threshold.is_some()),
                ("overrides", !def.overrides.is_empty()),
            ] {
                if present {
                    return Err(fail(
                        file,
                        at(k),
                        format!("rule {name:?}: a state rule has no `{k}`"),
                    ));
                }
            }
            if states.is_empty() {
                return Err(fail(
                    file,
                    at("state"),
                    format!("rule {name:?}: list at least one state (pending, ok, failing, backoff, failed, disabled)"),
                ));
            }
            RuleKind::State(states.clone())
        }
        (None, Some(metric)) => {
            if metric.is_empty() {
                return Err(fail(file, at("metric"), format!("rule {name:?}: must not be empty")));
            }
            let op = def.op.ok_or_else(|| {
                fail(file, at("op"), format!("rule {name:?}: a metric rule needs `op` (>, >=, <, <=)"))
            })?;
            let threshold = def.threshold.ok_or_else(|| {
                fail(file, at("threshold"), format!("rule {name:?}: a metric rule needs `threshold`"))
            })?;
            if !threshold.is_finite() {
                return Err(fail(file, at("threshold"), format!("rule {name:?}: must be a finite number")));
            }
            let clear = check_clear(file, at("clear_threshold"), name, op, threshold, def.clear_threshold)?;
            let entities = globs(
                file,
                &at("entities"),
                name,
                def.entities.as_ref().unwrap_or(&Globs::One("**".into())),
            )?;
            let mut overrides = Vec::new();
            for (j, o) in def.overrides.iter().enumerate() {
                let key = |k: &str| format!("rules[{i}].overrides[{j}].{k}");
                if !o.threshold.is_finite() {
                    return Err(fail(file, key("threshold"), format!("rule {name:?}: must be a finite number")));
                }
                let c = check_clear(file, key("clear_threshold"), name, op, o.threshold, o.clear_threshold)?;
                overrides.push((globs(file, &key("entities"), name, &o.entities)?, o.threshold, c));
            }
            if def.of.as_deref() == Some("") {
                return Err(fail(file, at("of"), format!("rule {name:?}: must name a metric, not be empty")));
            }
            RuleKind::Metric(MetricRule {
                entities,
                metric: Arc::from(metric.as_str()),
                of: def.of.as_deref().map(Arc::from),
                op,
                threshold,
                clear,
                overrides,
            })
        }
    };
    Ok(Rule {
        name: Arc::from(name),
        def: def.clone(),
        remotes,
        kind,
        hold: def.for_secs as i64,
        labels: Arc::new(def.labels.clone()),
    })
}

fn compile_webhook(
    file: &Path,
    i: usize,
    def: &WebhookDef,
) -> Result<WebhookTarget, ConfigFileError> {
    let at = |k: &str| format!("webhooks[{i}].{k}");
    let url = def.url.0.as_str();
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| {
            fail(
                file,
                at("url"),
                "must start with http:// or https:// (the value is not shown: it is a secret)",
            )
        })?;
    if rest.is_empty() || url.parse::<http::Uri>().is_err() {
        return Err(fail(
            file,
            at("url"),
            "is not a valid URL (the value is not shown: it is a secret)",
        ));
    }
    for (k, v) in &def.headers {
        if http::HeaderName::from_bytes(k.as_bytes()).is_err()
            || http::HeaderValue::from_str(&v.0).is_err()
        {
            return Err(fail(
                file,
                at(&format!("headers.{k}")),
                "is not a valid HTTP header (the value is not shown)",
            ));
        }
    }
    if !(1..=60).contains(&def.timeout_secs) {
        return Err(fail(
            file,
            at("timeout_secs"),
            format!("must be 1 to 60 seconds, not {}", def.timeout_secs),
        ));
    }
    if !(1..=100_000).contains(&def.queue_max) {
        return Err(fail(
            file,
            at("queue_max"),
            format!("must be 1 to 100000, not {}", def.queue_max),
        ));
    }
    if !(1..=20).contains(&def.max_attempts) {
        return Err(fail(
            file,
            at("max_attempts"),
            format!("must be 1 to 20, not {}", def.max_attempts),
        ));
    }
    Ok(WebhookTarget {
        name: def.name.clone().unwrap_or_else(|| format!("webhook-{i}")),
        def: def.clone(),
        timeout: Duration::from_secs(def.timeout_secs),
    })
}

impl RuleSet {
    /// Parses and compiles rules text read from `path`; the first problem is returned,
    /// naming the rule and the key.
    pub fn parse(path: &Path, text: &str) -> Result<RuleSet, ConfigFileError> {
        let file: RulesFile = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            let (line, key) = key_at(text, offset);
            fail(path, key, format!("{} (line {line})", e.message().trim()))
        })?;
        let mut names = HashSet::new();
        let mut rules = Vec::new();
        for (i, def) in file.rules.iter().enumerate() {
            let rule = compile_rule(path, i, def)?;
            if !names.insert(rule.name.clone()) {
                return Err(fail(
                    path,
                    format!("rules[{i}].name"),
                    format!(
                        "{:?} is the name of an earlier rule; rule names are unique",
                        def.name
                    ),
                ));
            }
            rules.push(Arc::new(rule));
        }
        let mut webhooks = Vec::new();
        let mut hook_names = HashSet::new();
        for (i, def) in file.webhooks.iter().enumerate() {
            let hook = compile_webhook(path, i, def)?;
            if !hook_names.insert(hook.name.clone()) {
                return Err(fail(
                    path,
                    format!("webhooks[{i}].name"),
                    format!("{:?} is used twice", hook.name),
                ));
            }
            webhooks.push(hook);
        }
        Ok(RuleSet {
            path: Some(path.to_path_buf()),
            rules,
            webhooks,
        })
    }

    /// Reads and compiles the rules file at `path`.
    pub fn load(path: &Path) -> Result<RuleSet, ConfigFileError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            fail(
                path,
                "(file)".into(),
                format!("cannot read the rules file: {e}"),
            )
        })?;
        Self::parse(path, &text)
    }

    /// Whether a metric rule covers `remote` (so its metrics must be polled).
    pub fn uses_metrics_of(&self, remote: &str) -> bool {
        self.rules
            .iter()
            .any(|r| matches!(r.kind, RuleKind::Metric(_)) && r.covers_remote(remote))
    }

    /// The rule named `name`.
    pub fn rule(&self, name: &str) -> Option<&Arc<Rule>> {
        self.rules.iter().find(|r| &*r.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RuleSet, ConfigFileError> {
        RuleSet::parse(Path::new("/etc/fleetpoll/rules.toml"), text)
    }

    #[test]
    fn the_issue_s_example_compiles_with_globs_per_segment() {
        let set = parse(
            r#"
            [[rules]]
            name = "guest-cpu-busy"
            remotes = "*"
            entities = "qemu/*"
            metric = "cpu_current"
            op = ">"
            threshold = 0.95
            clear_threshold = 0.90
            for_secs = 300
            severity = "warning"
            labels = { team = "infra" }
            [[rules.overrides]]
            entities = "qemu/101"
            threshold = 0.5

            [[rules]]
            name = "remote-down"
            state = ["failing", "backoff", "failed"]
            for_secs = 600
            severity = "critical"

            [[webhooks]]
            url = "http://127.0.0.1:9000/alerts"
            headers = { Authorization = "Bearer abc" }
            "#,
        )
        .unwrap();
        assert_eq!(set.rules.len(), 2);
        let RuleKind::Metric(m) = &set.rules[0].kind else {
            panic!("a metric rule")
        };
        assert_eq!(m.matches("qemu/100"), Some(None));
        assert_eq!(m.matches("qemu/101"), Some(Some(0)));
        assert_eq!(
            m.thresholds(Some(0)),
            (0.5, 0.5),
            "the override's own clear"
        );
        assert_eq!(m.thresholds(None), (0.95, 0.90));
        assert_eq!(
            m.matches("qemu/100/disk0"),
            None,
            "* stays within a segment"
        );
        assert_eq!(m.matches("lxc/100"), None);
        assert!(set.rules[0].covers_remote("pve-1"));
        assert!(matches!(&set.rules[1].kind, RuleKind::State(s) if s.len() == 3));
        assert_eq!(set.webhooks[0].name, "webhook-0");
        assert!(
            !format!("{:?}", set.webhooks).contains("abc"),
            "secrets redacted"
        );
        assert!(
            !format!("{:?}", set.webhooks).contains("9000"),
            "the URL is a secret"
        );
    }

    #[test]
    fn every_bad_rule_is_named_with_its_key() {
        let cases = [
            ("name = \"a\"\nmetric = \"cpu\"\nop = \">\"", "rules[0].threshold"),
            ("name = \"a\"\nmetric = \"cpu\"\nthreshold = 1.0", "rules[0].op"),
            ("name = \"a\"", "rules[0].metric"),
            ("name = \"a\"\nmetric = \"cpu\"\nop = \">\"\nthreshold = 0.9\nclear_threshold = 0.95", "rules[0].clear_threshold"),
            ("name = \"a\"\nmetric = \"cpu\"\nop = \"<\"\nthreshold = 0.9\nclear_threshold = 0.5", "rules[0].clear_threshold"),
            ("name = \"a\"\nstate = [\"failing\"]\nthreshold = 1.0", "rules[0].threshold"),
            ("name = \"a\"\nstate = [\"sleeping\"]", "rules[0].state"),
            ("name = \"a b\"\nstate = [\"failed\"]", "rules[0].name"),
            ("name = \"a\"\nmetric = \"cpu\"\nop = \">\"\nthreshold = 1.0\nentities = \"qemu/[\"", "rules[0].entities"),
            ("name = \"a\"\nmetric = \"cpu\"\nop = \"=\"\nthreshold = 1.0", "rules[0].op"),
            ("name = \"a\"\nmetric = \"cpu\"\nop = \">\"\nthreshold = 1.0\nthreshhold = 2.0", "rules[0].threshhold"),
            ("name = \"a\"\nstate = [\"failed\"]\nfor_secs = 99999999", "rules[0].for_secs"),
        ];
        for (body, key) in cases {
            let text = format!("[[rules]]\n{body}\n");
            let err = parse(&text).expect_err(body);
            assert_eq!(err.key, key, "{body}: {err}");
            assert!(err.to_string().contains("rules.toml"), "{err}");
        }
        let dup = "[[rules]]\nname = \"a\"\nstate = [\"failed\"]\n[[rules]]\nname = \"a\"\nstate = [\"failed\"]\n";
        let err = parse(dup).unwrap_err();
        assert_eq!(err.key, "rules[1].name");
        assert!(err.message.contains("unique"), "{err}");
        let threshold_named = parse("[[rules]]\nname = \"guest-cpu\"\nmetric = \"cpu\"\nop = \">\"\nthreshold = 0.9\nclear_threshold = 0.95\n").unwrap_err();
        assert!(
            threshold_named.message.contains("guest-cpu"),
            "the rule is named: {threshold_named}"
        );
    }

    #[test]
    fn a_bad_webhook_is_named_without_showing_its_secret() {
        for (body, key) in [
            ("url = \"ftp://secret-host/x\"", "webhooks[0].url"),
            (
                "url = \"http://h/x\"\ntimeout_secs = 0",
                "webhooks[0].timeout_secs",
            ),
            (
                "url = \"http://h/x\"\nheaders = { \"Bad Header\" = \"secret-value\" }",
                "webhooks[0].headers.Bad Header",
            ),
        ] {
            let err = parse(&format!("[[webhooks]]\n{body}\n")).unwrap_err();
            assert_eq!(err.key, key, "{err}");
            assert!(!err.to_string().contains("secret-"), "{err}");
        }
    }
}
