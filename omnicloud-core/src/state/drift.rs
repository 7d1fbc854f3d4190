//! Drift detection: comparing a resource's desired configuration with its actual one.
//!
//! A [`DriftDetector`] runs one [`DriftStrategy`]. Three come built in: [`ExactMatch`],
//! [`SemanticEquality`] and [`ThresholdBased`]; callers plug in their own through the trait.
//! Every report lists each differing path (a JSON pointer such as `/disks/0/size`) with its kind
//! and both values, never just a yes or no. Path rules (ignored paths, order-insensitive lists,
//! tolerances) are JSON pointers in which `*` matches any one segment; an ignore rule covers the
//! whole subtree below it. This module compares values only; it never reads or stores resources.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::StateError;

/// How a path differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Present in the actual configuration only.
    Added,
    /// Present in the desired configuration only.
    Removed,
    /// Present in both with different values.
    Changed,
}

impl ChangeKind {
    /// The kind's name (`"changed"`).
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Removed => "removed",
            ChangeKind::Changed => "changed",
        }
    }
}

/// One differing path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftChange {
    /// JSON pointer to the value (`""` for the whole document).
    pub path: String,
    /// How it differs.
    pub kind: ChangeKind,
    /// The desired value (`None` when added).
    pub desired: Option<Value>,
    /// The actual value (`None` when removed).
    pub actual: Option<Value>,
}

/// The result of comparing one resource.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DriftReport {
    /// The resource compared, when known.
    pub resource_id: Option<String>,
    /// Every differing path, in document order (object keys sorted).
    pub changes: Vec<DriftChange>,
}

impl DriftReport {
    /// Whether anything differs.
    pub fn has_drift(&self) -> bool {
        !self.changes.is_empty()
    }
}

/// A way of comparing desired and actual configuration.
pub trait DriftStrategy: Send + Sync + fmt::Debug {
    /// A short name for reports and logs.
    fn name(&self) -> &str;

    /// Every path where `actual` differs from `desired`.
    fn compare(&self, desired: &Value, actual: &Value) -> Result<Vec<DriftChange>, StateError>;
}

/// Runs a strategy over resources.
#[derive(Debug, Clone)]
pub struct DriftDetector {
    strategy: Arc<dyn DriftStrategy>,
}

impl DriftDetector {
    /// A detector using `strategy`.
    pub fn new(strategy: Arc<dyn DriftStrategy>) -> Self {
        Self { strategy }
    }

    /// The strategy in use.
    pub fn strategy(&self) -> &Arc<dyn DriftStrategy> {
        &self.strategy
    }

    /// Compares one desired document with its actual counterpart.
    pub fn detect(&self, desired: &Value, actual: &Value) -> Result<DriftReport, StateError> {
        Ok(DriftReport {
            resource_id: None,
            changes: self.strategy.compare(desired, actual)?,
        })
    }
}

impl Default for DriftDetector {
    fn default() -> Self {
        Self::new(Arc::new(SemanticEquality::default()))
    }
}

/// One segment of a path rule.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Any,
    Key(String),
}

/// A JSON-pointer path rule in which `*` matches any one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    text: String,
    segments: Vec<Segment>,
}

impl PathPattern {
    /// Parses a rule such as `/metadata/*/timestamp` (`~1` escapes `/`, `~0` escapes `~`).
    pub fn parse(text: &str) -> Result<Self, StateError> {
        let invalid = |reason: &str| StateError::InvalidDriftRule {
            rule: text.to_owned(),
            reason: reason.to_owned(),
        };
        if text.is_empty() {
            return Ok(Self {
                text: String::new(),
                segments: Vec::new(),
            });
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(invalid(
                "a path must be empty or start with '/' (JSON pointer)",
            ));
        };
        let mut segments = Vec::new();
        for raw in rest.split('/') {
            if raw == "*" {
                segments.push(Segment::Any);
                continue;
            }
            let bad_escape = raw
                .match_indices('~')
                .any(|(i, _)| !matches!(raw.as_bytes().get(i + 1), Some(b'0' | b'1')));
            if bad_escape {
                return Err(invalid("'~' must be followed by 0 or 1"));
            }
            segments.push(Segment::Key(raw.replace("~1", "/").replace("~0", "~")));
        }
        Ok(Self {
            text: text.to_owned(),
            segments,
        })
    }

    /// The rule as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn matches(&self, path: &[PathSeg<'_>]) -> bool {
        self.segments.len() == path.len() && self.matches_prefix_of(path)
    }

    fn matches_prefix_of(&self, path: &[PathSeg<'_>]) -> bool {
        self.segments.len() <= path.len()
            && self.segments.iter().zip(path).all(|(s, p)| match s {
                Segment::Any => true,
                Segment::Key(k) => p.matches_key(k),
            })
    }
}

/// A segment of the path being walked: an object key or an array index.
#[derive(Debug, Clone, Copy)]
enum PathSeg<'a> {
    Key(&'a str),
    Index(usize),
}

impl PathSeg<'_> {
    fn matches_key(&self, key: &str) -> bool {
        match self {
            PathSeg::Key(k) => *k == key,
            PathSeg::Index(i) => key.parse::<usize>().is_ok_and(|k| k == *i),
        }
    }
}

fn pointer(path: &[PathSeg<'_>]) -> String {
    let mut out = String::new();
    for seg in path {
        out.push('/');
        match seg {
            PathSeg::Key(k) => out.push_str(&k.replace('~', "~0").replace('/', "~1")),
            PathSeg::Index(i) => out.push_str(&i.to_string()),
        }
    }
    out
}

/// The comparison rules every built-in strategy is an instance of.
#[derive(Debug, Clone, Default)]
struct Rules {
    semantic: bool,
    ignore: Vec<PathPattern>,
    unordered: Vec<PathPattern>,
    tolerances: Vec<(PathPattern, f64)>,
    relative: bool,
}

impl Rules {
    fn compare(&self, desired: &Value, actual: &Value) -> Vec<DriftChange> {
        let mut out = Vec::new();
        let mut path = Vec::new();
        self.walk(Some(desired), Some(actual), &mut path, &mut out);
        out
    }

    fn walk<'v>(
        &self,
        desired: Option<&'v Value>,
        actual: Option<&'v Value>,
        path: &mut Vec<PathSeg<'v>>,
        out: &mut Vec<DriftChange>,
    ) {
        if self.ignore.iter().any(|p| p.matches_prefix_of(path)) {
            return;
        }
        let record = |kind, out: &mut Vec<DriftChange>, path: &[PathSeg<'_>]| {
            out.push(DriftChange {
                path: pointer(path),
                kind,
                desired: desired.cloned(),
                actual: actual.cloned(),
            });
        };
        match (desired, actual) {
            (None, None) => {}
            (Some(d), None) => {
                if !(self.semantic && d.is_null()) {
                    record(ChangeKind::Removed, out, path);
                }
            }
            (None, Some(a)) => {
                if !(self.semantic && a.is_null()) {
                    record(ChangeKind::Added, out, path);
                }
            }
            (Some(Value::Object(d)), Some(Value::Object(a))) => {
                // Both maps iterate in key order; merge them.
                let mut di = d.iter().peekable();
                let mut ai = a.iter().peekable();
                loop {
                    let (key, dv, av) = match (di.peek(), ai.peek()) {
                        (None, None) => break,
                        (Some((dk, _)), Some((ak, _))) if dk == ak => {
                            let ((k, dv), (_, av)) =
                                (di.next().expect("peeked"), ai.next().expect("peeked"));
                            (k, Some(dv), Some(av))
                        }
                        (Some((dk, _)), Some((ak, _))) if dk < ak => {
                            let (k, dv) = di.next().expect("peeked");
                            (k, Some(dv), None)
                        }
                        (Some(_), None) => {
                            let (k, dv) = di.next().expect("peeked");
                            (k, Some(dv), None)
                        }
                        _ => {
                            let (k, av) = ai.next().expect("peeked");
                            (k, None, Some(av))
                        }
                    };
                    path.push(PathSeg::Key(key));
                    self.walk(dv, av, path, out);
                    path.pop();
                }
            }
            (Some(Value::Array(d)), Some(Value::Array(a))) => {
                if self.unordered.iter().any(|p| p.matches(path)) {
                    if !self.same_multiset(d, a) {
                        record(ChangeKind::Changed, out, path);
                    }
                    return;
                }
                for i in 0..d.len().max(a.len()) {
                    path.push(PathSeg::Index(i));
                    self.walk(d.get(i), a.get(i), path, out);
                    path.pop();
                }
            }
            (Some(Value::Number(d)), Some(Value::Number(a))) => {
                if !self.numbers_equal(d, a, path) {
                    record(ChangeKind::Changed, out, path);
                }
            }
            (Some(d), Some(a)) => {
                if d != a {
                    record(ChangeKind::Changed, out, path);
                }
            }
        }
    }

    fn numbers_equal(
        &self,
        d: &serde_json::Number,
        a: &serde_json::Number,
        path: &[PathSeg<'_>],
    ) -> bool {
        if let Some((_, tolerance)) = self.tolerances.iter().find(|(p, _)| p.matches(path)) {
            let (Some(df), Some(af)) = (d.as_f64(), a.as_f64()) else {
                return d == a;
            };
            let allowed = if self.relative {
                tolerance * df.abs()
            } else {
                *tolerance
            };
            return (df - af).abs() <= allowed;
        }
        if !self.semantic {
            return d == a;
        }
        match (d.as_i64(), a.as_i64(), d.as_u64(), a.as_u64()) {
            (Some(x), Some(y), _, _) => x == y,
            (_, _, Some(x), Some(y)) => x == y,
            _ => d.as_f64() == a.as_f64(),
        }
    }

    /// Order-insensitive comparison of two lists under these rules (semantic equality of
    /// elements), as multisets.
    fn same_multiset(&self, d: &[Value], a: &[Value]) -> bool {
        if d.len() != a.len() {
            return false;
        }
        let mut dk: Vec<String> = d.iter().map(|v| self.canonical(v)).collect();
        let mut ak: Vec<String> = a.iter().map(|v| self.canonical(v)).collect();
        dk.sort_unstable();
        ak.sort_unstable();
        dk == ak
    }

    /// A text form equal for values these rules consider equal (tolerances aside).
    fn canonical(&self, v: &Value) -> String {
        if !self.semantic {
            return v.to_string();
        }
        fn normalise(v: &Value) -> Value {
            match v {
                Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                    (Some(i), _, _) => Value::from(i),
                    (_, Some(u), _) => Value::from(u),
                    (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
                        Value::from(f as i64)
                    }
                    _ => v.clone(),
                },
                Value::Object(m) => Value::Object(
                    m.iter()
                        .filter(|(_, x)| !x.is_null())
                        .map(|(k, x)| (k.clone(), normalise(x)))
                        .collect(),
                ),
                Value::Array(items) => Value::Array(items.iter().map(normalise).collect()),
                other => other.clone(),
            }
        }
        normalise(v).to_string()
    }
}

fn parse_all(paths: &[&str]) -> Result<Vec<PathPattern>, StateError> {
    paths.iter().map(|p| PathPattern::parse(p)).collect()
}

/// Values must be identical: same keys, same list order, same number representation
/// (`1` differs from `1.0`), `null` differs from a missing key.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExactMatch;

impl DriftStrategy for ExactMatch {
    fn name(&self) -> &str {
        "exact_match"
    }
    fn compare(&self, desired: &Value, actual: &Value) -> Result<Vec<DriftChange>, StateError> {
        Ok(Rules::default().compare(desired, actual))
    }
}

/// Values must mean the same: key order never matters, `1 == 1.0`, `null` equals a missing key,
/// lists at the `unordered` paths compare as multisets, and `ignore` paths are skipped.
#[derive(Debug, Clone, Default)]
pub struct SemanticEquality {
    rules: Rules,
}

impl SemanticEquality {
    /// Semantic equality with ignored and order-insensitive paths.
    pub fn new(ignore: &[&str], unordered: &[&str]) -> Result<Self, StateError> {
        Ok(Self {
            rules: Rules {
                semantic: true,
                ignore: parse_all(ignore)?,
                unordered: parse_all(unordered)?,
                ..Rules::default()
            },
        })
    }
}

impl DriftStrategy for SemanticEquality {
    fn name(&self) -> &str {
        "semantic_equality"
    }
    fn compare(&self, desired: &Value, actual: &Value) -> Result<Vec<DriftChange>, StateError> {
        let mut rules = self.rules.clone();
        rules.semantic = true;
        Ok(rules.compare(desired, actual))
    }
}

/// Semantic equality, plus numeric tolerances per path: absolute (`|actual - desired| <= t`) or
/// relative (`|actual - desired| <= t * |desired|`).
#[derive(Debug, Clone)]
pub struct ThresholdBased {
    rules: Rules,
}

impl ThresholdBased {
    /// Tolerances per path; `relative` picks relative over absolute tolerances.
    pub fn new(tolerances: &[(&str, f64)], relative: bool) -> Result<Self, StateError> {
        let mut parsed = Vec::with_capacity(tolerances.len());
        for (path, tolerance) in tolerances {
            if !tolerance.is_finite() || *tolerance < 0.0 {
                return Err(StateError::InvalidDriftRule {
                    rule: format!("{path} = {tolerance}"),
                    reason: "a tolerance must be a finite number >= 0".to_owned(),
                });
            }
            parsed.push((PathPattern::parse(path)?, *tolerance));
        }
        Ok(Self {
            rules: Rules {
                semantic: true,
                tolerances: parsed,
                relative,
                ..Rules::default()
            },
        })
    }

    /// Also skips `ignore` paths and compares lists at `unordered` paths as multisets.
    pub fn with_paths(mut self, ignore: &[&str], unordered: &[&str]) -> Result<Self, StateError> {
        self.rules.ignore = parse_all(ignore)?;
        self.rules.unordered = parse_all(unordered)?;
        Ok(self)
    }
}

impl DriftStrategy for ThresholdBased {
    fn name(&self) -> &str {
        "threshold_based"
    }
    fn compare(&self, desired: &Value, actual: &Value) -> Result<Vec<DriftChange>, StateError> {
        Ok(self.rules.compare(desired, actual))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(changes: &[DriftChange]) -> Vec<(String, ChangeKind)> {
        changes.iter().map(|c| (c.path.clone(), c.kind)).collect()
    }

    #[test]
    fn exact_match_reports_every_path_with_both_values() {
        let desired =
            json!({"size": 2, "tags": ["a", "b"], "db": {"engine": "pg", "v": 15}, "gone": 1});
        let actual =
            json!({"size": 2.0, "tags": ["b", "a"], "db": {"engine": "pg", "v": 16}, "new": null});
        let changes = ExactMatch.compare(&desired, &actual).expect("compare");
        assert_eq!(
            paths(&changes),
            vec![
                ("/db/v".into(), ChangeKind::Changed),
                ("/gone".into(), ChangeKind::Removed),
                ("/new".into(), ChangeKind::Added),
                ("/size".into(), ChangeKind::Changed),
                ("/tags/0".into(), ChangeKind::Changed),
                ("/tags/1".into(), ChangeKind::Changed),
            ]
        );
        assert_eq!(changes[0].desired, Some(json!(15)));
        assert_eq!(changes[0].actual, Some(json!(16)));
        assert_eq!(changes[1].actual, None);
        assert_eq!(changes[2].desired, None);
    }

    #[test]
    fn semantic_equality_rules() {
        let s = SemanticEquality::new(&["/metadata/*/updated"], &["/tags"]).expect("rules");
        let desired = json!({"size": 1, "tags": ["a", "b", "a"], "opt": null, "metadata": {"x": {"updated": 1, "keep": 1}}});
        let actual = json!({"tags": ["a", "a", "b"], "size": 1.0, "metadata": {"x": {"updated": 99, "keep": 1}}});
        assert!(s.compare(&desired, &actual).expect("compare").is_empty());
        let actual = json!({"tags": ["a", "b", "b"], "size": 1.5, "metadata": {"x": {"updated": 99, "keep": 2}}});
        assert_eq!(
            paths(&s.compare(&desired, &actual).expect("compare")),
            vec![
                ("/metadata/x/keep".into(), ChangeKind::Changed),
                ("/size".into(), ChangeKind::Changed),
                ("/tags".into(), ChangeKind::Changed),
            ]
        );
        // Ordered lists elsewhere still compare by position, and missing elements are reported.
        let changes = s
            .compare(&json!({"l": [1, 2]}), &json!({"l": [1]}))
            .expect("compare");
        assert_eq!(paths(&changes), vec![("/l/1".into(), ChangeKind::Removed)]);
    }

    #[test]
    fn unordered_lists_of_objects_compare_semantically() {
        let s = SemanticEquality::new(&[], &["/rules"]).expect("rules");
        let desired = json!({"rules": [{"port": 80, "cidr": null}, {"port": 443}]});
        let actual = json!({"rules": [{"port": 443.0}, {"port": 80}]});
        assert!(s.compare(&desired, &actual).expect("compare").is_empty());
    }

    #[test]
    fn thresholds_absolute_and_relative() {
        let abs =
            ThresholdBased::new(&[("/cpu", 0.5), ("/disks/*/iops", 10.0)], false).expect("rules");
        let desired = json!({"cpu": 2.0, "disks": [{"iops": 100}], "mem": 4});
        assert!(
            abs.compare(
                &desired,
                &json!({"cpu": 2.4, "disks": [{"iops": 109}], "mem": 4.0})
            )
            .expect("compare")
            .is_empty()
        );
        assert_eq!(
            paths(
                &abs.compare(
                    &desired,
                    &json!({"cpu": 2.6, "disks": [{"iops": 111}], "mem": 5})
                )
                .expect("compare")
            ),
            vec![
                ("/cpu".into(), ChangeKind::Changed),
                ("/disks/0/iops".into(), ChangeKind::Changed),
                ("/mem".into(), ChangeKind::Changed)
            ]
        );
        let rel = ThresholdBased::new(&[("/cpu", 0.1)], true).expect("rules");
        assert!(
            rel.compare(&json!({"cpu": 10}), &json!({"cpu": 10.9}))
                .expect("c")
                .is_empty()
        );
        assert!(
            !rel.compare(&json!({"cpu": 10}), &json!({"cpu": 11.5}))
                .expect("c")
                .is_empty()
        );
        let with = ThresholdBased::new(&[], false)
            .and_then(|t| t.with_paths(&["/ts"], &["/l"]))
            .expect("rules");
        assert!(
            with.compare(
                &json!({"ts": 1, "l": [1, 2]}),
                &json!({"ts": 2, "l": [2, 1]})
            )
            .expect("c")
            .is_empty()
        );
    }

    #[test]
    fn bad_rules_are_refused() {
        for bad in ["no-slash", "/a~2b", "/trailing~"] {
            assert!(
                matches!(
                    PathPattern::parse(bad),
                    Err(StateError::InvalidDriftRule { .. })
                ),
                "{bad}"
            );
        }
        for t in [-1.0, f64::NAN, f64::INFINITY] {
            assert!(ThresholdBased::new(&[("/x", t)], false).is_err());
        }
        assert!(SemanticEquality::new(&["x"], &[]).is_err());
    }

    #[test]
    fn pointers_escape_and_patterns_unescape() {
        let changes = ExactMatch
            .compare(&json!({"a/b": {"c~d": 1}}), &json!({"a/b": {"c~d": 2}}))
            .expect("c");
        assert_eq!(changes[0].path, "/a~1b/c~0d");
        let s = SemanticEquality::new(&["/a~1b/c~0d"], &[]).expect("rules");
        assert!(
            s.compare(&json!({"a/b": {"c~d": 1}}), &json!({"a/b": {"c~d": 2}}))
                .expect("c")
                .is_empty()
        );
        assert_eq!(PathPattern::parse("/a~1b").expect("p").as_str(), "/a~1b");
        // An index pattern matches array positions.
        let s = SemanticEquality::new(&["/l/1"], &[]).expect("rules");
        assert!(
            s.compare(&json!({"l": [1, 2]}), &json!({"l": [1, 3]}))
                .expect("c")
                .is_empty()
        );
    }

    #[test]
    fn whole_document_and_type_changes() {
        let changes = ExactMatch
            .compare(&json!({"a": 1}), &json!([1]))
            .expect("c");
        assert_eq!(paths(&changes), vec![("".into(), ChangeKind::Changed)]);
        let changes = SemanticEquality::default()
            .compare(&json!({"a": "1"}), &json!({"a": 1}))
            .expect("c");
        assert_eq!(paths(&changes), vec![("/a".into(), ChangeKind::Changed)]);
        let detector = DriftDetector::default();
        assert_eq!(detector.strategy().name(), "semantic_equality");
        assert!(
            !detector
                .detect(&json!({"a": 1}), &json!({"a": 1.0}))
                .expect("d")
                .has_drift()
        );
        assert!(
            DriftDetector::new(Arc::new(ExactMatch))
                .detect(&json!({"a": 1}), &json!({"a": 1.0}))
                .expect("d")
                .has_drift()
        );
    }
}
