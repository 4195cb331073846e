//! Who may put which tags on a node (`tagOwners`).
//!
//! A user may apply a tag when `tagOwners` lists the user, a group the user
//! is in, or `autogroup:member`. A tagged node (or an auth key owned by tags)
//! may apply a tag it already has, or one whose owners include one of its tags.

use crate::syntax::{AutoGroup, Owner, Policy};
use crate::topology::PolicyUser;

/// Who asks to apply tags.
#[derive(Debug, Clone, Copy)]
pub enum TagClaimant<'a> {
    /// A user (logging in a node with `--advertise-tags`, or owning an auth key).
    User(&'a PolicyUser),
    /// A node or auth key that already carries these tags.
    Tags(&'a [String]),
}

/// Why tags may not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagClaimError {
    #[error(
        "tag {tag:?} is not defined in tagOwners; add it there with its owners before using it"
    )]
    Undefined { tag: String },
    #[error(
        "{claimant} may not apply tag {tag:?}: tagOwners[{tag:?}] lists {owners}; add {claimant} (or one of their groups) there"
    )]
    NotOwner {
        tag: String,
        claimant: String,
        owners: String,
    },
}

impl Policy {
    /// Checks that `claimant` may apply every tag of `tags`; the first refused tag is reported.
    pub fn may_claim_tags(
        &self,
        claimant: TagClaimant<'_>,
        tags: &[String],
    ) -> Result<(), TagClaimError> {
        for tag in tags {
            let Some(owners) = self.tag_owners.get(tag) else {
                return Err(TagClaimError::Undefined { tag: tag.clone() });
            };
            let allowed = match claimant {
                TagClaimant::User(user) => owners.iter().any(|o| match o {
                    Owner::User(u) => user.matches(u),
                    Owner::Group(g) => self
                        .groups
                        .get(g)
                        .is_some_and(|members| members.iter().any(|m| user.matches(m))),
                    Owner::Auto(AutoGroup::Member) => true,
                    Owner::Tag(_) | Owner::Auto(_) => false,
                }),
                TagClaimant::Tags(have) => {
                    have.contains(tag)
                        || owners
                            .iter()
                            .any(|o| matches!(o, Owner::Tag(t) if have.contains(t)))
                }
            };
            if !allowed {
                let claimant = match claimant {
                    TagClaimant::User(u) => format!(
                        "user {:?}",
                        if u.email.is_empty() {
                            &u.name
                        } else {
                            &u.email
                        }
                    ),
                    TagClaimant::Tags(t) => format!("tags {t:?}"),
                };
                let owners = if owners.is_empty() {
                    "no owners".to_owned()
                } else {
                    owners
                        .iter()
                        .map(|o| match o {
                            Owner::User(s) | Owner::Group(s) | Owner::Tag(s) => s.clone(),
                            Owner::Auto(a) => a.name(),
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                return Err(TagClaimError::NotOwner {
                    tag: tag.clone(),
                    claimant,
                    owners,
                });
            }
        }
        Ok(())
    }
}
