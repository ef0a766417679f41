//! The 1.0 enum spellings (proto3 JSON: `TASK_STATE_COMPLETED`, `ROLE_USER`) of the
//! internal [`TaskState`] and [`Role`], as `#[serde(with = …)]` modules. Input also takes
//! the enum's number (proto3 JSON allows it) and the 0.3 spelling (`completed`, `user`).

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serializer};

use crate::{Role, TaskState};

/// A proto enum value as JSON: its name or its number.
#[derive(Deserialize)]
#[serde(untagged)]
enum Raw<'a> {
    Number(i64),
    #[serde(borrow)]
    Name(std::borrow::Cow<'a, str>),
}

/// `TaskState` ↔ `TASK_STATE_*`. 0.3's `unknown` is 1.0's `TASK_STATE_UNSPECIFIED`.
pub mod task_state {
    use super::*;

    /// The 1.0 name of a state.
    pub fn name(state: TaskState) -> &'static str {
        match state {
            TaskState::Submitted => "TASK_STATE_SUBMITTED",
            TaskState::Working => "TASK_STATE_WORKING",
            TaskState::Completed => "TASK_STATE_COMPLETED",
            TaskState::Failed => "TASK_STATE_FAILED",
            TaskState::Canceled => "TASK_STATE_CANCELED",
            TaskState::InputRequired => "TASK_STATE_INPUT_REQUIRED",
            TaskState::Rejected => "TASK_STATE_REJECTED",
            TaskState::AuthRequired => "TASK_STATE_AUTH_REQUIRED",
            TaskState::Unknown => "TASK_STATE_UNSPECIFIED",
        }
    }

    /// The state a 1.0 name, a proto number or a 0.3 name stands for.
    pub fn parse_name(name: &str) -> Option<TaskState> {
        TaskState::ALL
            .into_iter()
            .find(|s| self::name(*s) == name || s.as_str() == name)
    }

    fn from_number(n: i64) -> Option<TaskState> {
        Some(match n {
            0 => TaskState::Unknown,
            1 => TaskState::Submitted,
            2 => TaskState::Working,
            3 => TaskState::Completed,
            4 => TaskState::Failed,
            5 => TaskState::Canceled,
            6 => TaskState::InputRequired,
            7 => TaskState::Rejected,
            8 => TaskState::AuthRequired,
            _ => return None,
        })
    }

    pub fn serialize<S: Serializer>(state: &TaskState, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(name(*state))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<TaskState, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Number(n) => from_number(n),
            Raw::Name(n) => parse_name(&n),
        }
        .ok_or_else(|| D::Error::custom("unknown task state; expected TASK_STATE_SUBMITTED, TASK_STATE_WORKING, TASK_STATE_COMPLETED, …"))
    }

    /// For `Option<TaskState>` fields (a filter).
    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(v: &Option<TaskState>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(state) => s.serialize_str(name(*state)),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<TaskState>, D::Error> {
            #[derive(Deserialize)]
            struct W(#[serde(with = "super")] TaskState);
            Ok(Option::<W>::deserialize(d)?.map(|W(s)| s))
        }
    }
}

/// `Role` ↔ `ROLE_USER` / `ROLE_AGENT`. `ROLE_UNSPECIFIED` is refused: a message has a
/// sender.
pub mod role {
    use super::*;

    pub fn serialize<S: Serializer>(role: &Role, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match role {
            Role::User => "ROLE_USER",
            Role::Agent => "ROLE_AGENT",
        })
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Role, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Number(1) => Ok(Role::User),
            Raw::Number(2) => Ok(Role::Agent),
            Raw::Name(n) if n == "ROLE_USER" || n == "user" => Ok(Role::User),
            Raw::Name(n) if n == "ROLE_AGENT" || n == "agent" => Ok(Role::Agent),
            _ => Err(D::Error::custom("`role` must be ROLE_USER or ROLE_AGENT")),
        }
    }
}
