//! Skills: what the agent can do, read at start-up and served to callers.
//!
//! - [`record`]: one skill as written ([`Skill`]), its defaults and its checks.
//! - [`load`]: where skills come from ([`SkillSource`]: directories, files, inline) and
//!   [`SkillError`], which names the file, the field and the problem.
//! - [`Skills`] (here): the agent's public and private skills by id, and who may see the
//!   private ones (`agent.allowed_dids`).
//! - `routes`: `GET /agent/skills`, `/agent/skills/{id}`, `/agent/skills/{id}/documentation`
//!   (public) and `GET /agent/private.json` (authenticated, `agent.allowed_dids` only).

pub mod load;
pub mod record;
pub(crate) mod routes;

use std::collections::HashMap;
use std::sync::Arc;

pub use load::{sources, Documentation, LoadedSkill, SkillError, SkillSource};
pub use record::{Assessment, Performance, Skill, Specialization};

use crate::options::AgentConfig;

/// A skill list could not be read: its configuration key and the skill's error.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{error}")]
pub struct SkillsError {
    /// `agent.skills` or `agent.private_skills`.
    pub key: &'static str,
    pub error: SkillError,
}

/// The agent's skills: public ones (card, `/agent/skills`, negotiation) and private ones
/// (the private card, for the callers `agent.allowed_dids` lists).
#[derive(Debug, Default)]
pub struct Skills {
    public: Vec<Arc<LoadedSkill>>,
    private: Vec<Arc<LoadedSkill>>,
    /// Index into `public` (`false`) or `private` (`true`) by id.
    by_id: HashMap<String, (bool, usize)>,
    allowed_dids: Vec<String>,
}

impl Skills {
    /// Reads every skill `agent` declares. Ids are unique across both lists.
    pub fn load(agent: &AgentConfig) -> Result<Skills, SkillsError> {
        let mut skills = Skills {
            allowed_dids: agent.allowed_dids.clone(),
            ..Skills::default()
        };
        for (key, private, sources) in [
            ("agent.skills", false, &agent.skills),
            ("agent.private_skills", true, &agent.private_skills),
        ] {
            for (i, source) in sources.iter().enumerate() {
                let loaded =
                    load::load(source, key, i).map_err(|error| SkillsError { key, error })?;
                skills
                    .add(loaded, private)
                    .map_err(|error| SkillsError { key, error })?;
            }
        }
        Ok(skills)
    }

    /// From skills already read (tests, tools).
    pub fn from_loaded(
        public: Vec<LoadedSkill>,
        private: Vec<LoadedSkill>,
        allowed_dids: Vec<String>,
    ) -> Result<Skills, SkillError> {
        let mut skills = Skills {
            allowed_dids,
            ..Skills::default()
        };
        for s in public {
            skills.add(s, false)?;
        }
        for s in private {
            skills.add(s, true)?;
        }
        Ok(skills)
    }

    fn add(&mut self, loaded: LoadedSkill, private: bool) -> Result<(), SkillError> {
        let list = if private {
            &mut self.private
        } else {
            &mut self.public
        };
        if let Some(&(p, i)) = self.by_id.get(&loaded.skill.id) {
            let first = if p { &self.private[i] } else { &self.public[i] };
            return Err(SkillError {
                origin: loaded.origin.clone(),
                problem: record::Problem {
                    field: Some("id".into()),
                    message: format!(
                        "{:?} is already the id of the skill from {}; skill ids must be unique",
                        loaded.skill.id, first.origin
                    ),
                },
            });
        }
        self.by_id
            .insert(loaded.skill.id.clone(), (private, list.len()));
        list.push(Arc::new(loaded));
        Ok(())
    }

    /// The skills everyone sees.
    pub fn public(&self) -> &[Arc<LoadedSkill>] {
        &self.public
    }

    /// The skills only admitted callers see.
    pub fn private(&self) -> &[Arc<LoadedSkill>] {
        &self.private
    }

    /// A public skill by id.
    pub fn public_skill(&self, id: &str) -> Option<&Arc<LoadedSkill>> {
        match self.by_id.get(id) {
            Some(&(false, i)) => self.public.get(i),
            _ => None,
        }
    }

    /// A skill `caller` may use: any public one, a private one when the caller is admitted.
    pub fn visible_to(&self, id: &str, caller: Option<&str>) -> Option<&Arc<LoadedSkill>> {
        match self.by_id.get(id) {
            Some(&(false, i)) => self.public.get(i),
            Some(&(true, i)) if self.admits(caller) => self.private.get(i),
            _ => None,
        }
    }

    /// Whether the private card (and the private skills) are restricted to listed callers:
    /// there are private skills, or `agent.allowed_dids` lists someone.
    pub fn restricted(&self) -> bool {
        !self.private.is_empty() || !self.allowed_dids.is_empty()
    }

    /// Whether `caller` may see the private card: listed in `agent.allowed_dids`, or anyone
    /// when nothing is restricted.
    pub fn admits(&self, caller: Option<&str>) -> bool {
        if !self.restricted() {
            return true;
        }
        caller.is_some_and(|c| self.allowed_dids.iter().any(|d| d == c))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn loaded(id: &str) -> LoadedSkill {
        let mut skill = Skill::new(id, id, "d");
        skill.check().unwrap();
        LoadedSkill {
            skill,
            origin: format!("test {id}"),
            documentation: None,
            markdown: None,
            extra: Default::default(),
        }
    }

    #[test]
    fn private_skills_are_seen_by_admitted_callers_only() {
        let skills = Skills::from_loaded(
            vec![loaded("pub")],
            vec![loaded("priv")],
            vec!["did:ok".into()],
        )
        .unwrap();
        assert!(skills.public_skill("pub").is_some());
        assert!(skills.public_skill("priv").is_none());
        assert!(skills.visible_to("priv", Some("did:ok")).is_some());
        assert!(skills.visible_to("priv", Some("did:other")).is_none());
        assert!(skills.visible_to("priv", None).is_none());
        assert!(skills.visible_to("pub", None).is_some());
    }

    #[test]
    fn ids_are_unique_across_both_lists() {
        let e = Skills::from_loaded(vec![loaded("a")], vec![loaded("a")], vec![]).unwrap_err();
        assert_eq!(e.problem.field.as_deref(), Some("id"));
        assert!(e.problem.message.contains("test a"), "{e}");
    }
}
