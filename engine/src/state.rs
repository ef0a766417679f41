//! The task state machine.
//!
//! ```text
//! submitted               → working | input-required (a payment asked for first) | rejected
//!                           | canceled | failed
//! working                 → working (interim status) | input-required | auth-required
//!                           | completed | failed | canceled | rejected
//! input-/auth-required    → submitted (follow-up message) | working | canceled | failed
//! completed, canceled,
//! failed, rejected        → nothing (terminal, immutable)
//! ```
//! `unknown` is never entered by this engine; a task found in it may only fail or be canceled.

use bindu_schemas::TaskState::{self, *};

/// Whether a task may move from `from` to `to`.
pub fn can_transition(from: TaskState, to: TaskState) -> bool {
    match from {
        Completed | Canceled | Failed | Rejected => false,
        Submitted => matches!(to, Working | InputRequired | Rejected | Canceled | Failed),
        Working => matches!(
            to,
            Working | InputRequired | AuthRequired | Completed | Failed | Canceled | Rejected
        ),
        InputRequired | AuthRequired => matches!(to, Submitted | Working | Canceled | Failed),
        Unknown => matches!(to, Canceled | Failed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_state() -> impl Strategy<Value = TaskState> {
        proptest::sample::select(TaskState::ALL.to_vec())
    }

    /// The module documentation's table, edge by edge.
    fn documented(from: TaskState, to: TaskState) -> bool {
        const EDGES: &[(TaskState, &[TaskState])] = &[
            (
                Submitted,
                &[Working, InputRequired, Rejected, Canceled, Failed],
            ),
            (
                Working,
                &[
                    Working,
                    InputRequired,
                    AuthRequired,
                    Completed,
                    Failed,
                    Canceled,
                    Rejected,
                ],
            ),
            (InputRequired, &[Submitted, Working, Canceled, Failed]),
            (AuthRequired, &[Submitted, Working, Canceled, Failed]),
            (Unknown, &[Canceled, Failed]),
        ];
        EDGES.iter().any(|(f, tos)| *f == from && tos.contains(&to))
    }

    #[test]
    fn every_pair_matches_the_documented_table() {
        for from in TaskState::ALL {
            for to in TaskState::ALL {
                assert_eq!(
                    can_transition(from, to),
                    documented(from, to),
                    "{from:?} -> {to:?}"
                );
            }
        }
    }

    #[test]
    fn happy_paths() {
        assert!(can_transition(Submitted, Working));
        assert!(can_transition(Working, Completed));
        assert!(can_transition(Working, InputRequired));
        assert!(can_transition(InputRequired, Submitted));
        assert!(!can_transition(Submitted, Completed));
        // A priced agent on the a2a-x402 flow asks for the payment before anything runs.
        assert!(can_transition(Submitted, InputRequired));
        assert!(!can_transition(Submitted, Submitted));
        assert!(!can_transition(Working, Submitted));
    }

    proptest! {
        #[test]
        fn terminal_states_never_move(from in any_state(), to in any_state()) {
            if from.is_terminal() {
                prop_assert!(!can_transition(from, to));
            }
        }

        #[test]
        fn nothing_enters_unknown_or_leaves_to_submitted_except_follow_ups(from in any_state(), to in any_state()) {
            if to == Unknown {
                prop_assert!(!can_transition(from, to));
            }
            if to == Submitted {
                prop_assert_eq!(can_transition(from, to), from.is_interrupted());
            }
        }

        #[test]
        fn every_non_terminal_state_can_be_canceled_or_failed(from in any_state()) {
            if !from.is_terminal() {
                prop_assert!(can_transition(from, Canceled));
                prop_assert!(can_transition(from, Failed));
            }
        }

        /// Walks from `submitted` through random targets: every step is allowed exactly
        /// when the table in this module's documentation lists it (written out again below,
        /// independently of `can_transition`), `unknown` is never entered, and a terminal
        /// state, once reached, is where the walk ends.
        #[test]
        fn random_walks_follow_the_documented_table(steps in proptest::collection::vec(any_state(), 1..40)) {
            let mut state = Submitted;
            let mut ended: Option<TaskState> = None;
            for to in steps {
                prop_assert_eq!(can_transition(state, to), documented(state, to), "{:?} -> {:?}", state, to);
                if can_transition(state, to) {
                    prop_assert!(ended.is_none(), "left terminal {:?} for {:?}", state, to);
                    state = to;
                    prop_assert_ne!(state, Unknown);
                    if state.is_terminal() {
                        ended = Some(state);
                    }
                }
            }
        }
    }
}
