//! Status conditions, shaped like `metav1.Condition` so `kubectl wait --for=condition=Ready`
//! and every dashboard that reads conditions understand them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One condition of a resource's status.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `Reconciling`, `ResetPending`, ...
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A PascalCase word saying why, stable enough for alerts (`ClusterUnreachable`).
    pub reason: String,
    /// What a person needs to know, with the broker's own message where there is one.
    pub message: String,
    /// When `status` last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// The `metadata.generation` the condition was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl Condition {
    /// A condition with status `True` or `False`.
    pub fn new(type_: &str, status: bool, reason: &str, message: impl Into<String>) -> Self {
        Condition {
            type_: type_.to_string(),
            status: if status { "True" } else { "False" }.to_string(),
            reason: reason.to_string(),
            message: message.into(),
            last_transition_time: None,
            observed_generation: None,
        }
    }

    /// Whether the status is `True`.
    pub fn is_true(&self) -> bool {
        self.status == "True"
    }
}

/// Merges freshly computed conditions into the previous ones: a condition whose status did
/// not change keeps its `lastTransitionTime`; one that changed (or is new) gets `now`.
/// Conditions absent from `next` are dropped, and every condition gets `generation`.
pub fn merge_conditions(
    previous: &[Condition],
    next: Vec<Condition>,
    generation: Option<i64>,
    now: &str,
) -> Vec<Condition> {
    next.into_iter()
        .map(|mut c| {
            let same = previous
                .iter()
                .find(|p| p.type_ == c.type_ && p.status == c.status);
            c.last_transition_time = match same {
                Some(p) if p.last_transition_time.is_some() => p.last_transition_time.clone(),
                _ => Some(now.to_string()),
            };
            c.observed_generation = generation;
            c
        })
        .collect()
}

/// The condition of type `type_`, if any.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_status_keeps_its_transition_time() {
        let mut old = Condition::new("Ready", true, "Ready", "fine");
        old.last_transition_time = Some("2026-01-01T00:00:00Z".into());
        let merged = merge_conditions(
            &[old],
            vec![
                Condition::new("Ready", true, "Ready", "still fine"),
                Condition::new("Reconciling", false, "Done", ""),
            ],
            Some(3),
            "2026-02-02T00:00:00Z",
        );
        assert_eq!(
            merged[0].last_transition_time.as_deref(),
            Some("2026-01-01T00:00:00Z")
        );
        assert_eq!(merged[0].message, "still fine");
        assert_eq!(
            merged[1].last_transition_time.as_deref(),
            Some("2026-02-02T00:00:00Z")
        );
        assert!(merged.iter().all(|c| c.observed_generation == Some(3)));
    }

    #[test]
    fn changed_status_gets_a_new_transition_time() {
        let mut old = Condition::new("Ready", true, "Ready", "");
        old.last_transition_time = Some("2026-01-01T00:00:00Z".into());
        let merged = merge_conditions(
            &[old],
            vec![Condition::new("Ready", false, "ClusterUnreachable", "")],
            None,
            "2026-02-02T00:00:00Z",
        );
        assert_eq!(
            merged[0].last_transition_time.as_deref(),
            Some("2026-02-02T00:00:00Z")
        );
    }
}
