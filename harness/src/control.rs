//! What the runner may ask of an environment before and during a scenario: bring it to the
//! stack profile the scenario needs (`stack:` in the catalog). Environments implement it; the
//! engine only calls it, so neither reaches into the other.

use std::future::Future;
use std::pin::Pin;

use crate::policy::StackProfile;

/// An environment the runner can reconfigure.
pub trait StackControl {
    /// Reconfigures to `profile` (a no-op when nothing changes), or says why it cannot.
    fn apply<'a>(
        &'a mut self,
        profile: &'a StackProfile,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + 'a>>;
}

/// An environment the harness does not control (a user's deployment): it runs scenarios
/// that need the default profile and refuses the others with the reason.
pub struct Uncontrolled;

impl StackControl for Uncontrolled {
    fn apply<'a>(
        &'a mut self,
        profile: &'a StackProfile,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + 'a>> {
        let result = if profile.is_default() {
            Ok(())
        } else {
            Err(format!(
                "this scenario needs the stack profile {}, and this environment cannot be \
                 reconfigured by the harness\nhow to fix: run it with --env local, or deselect it",
                serde_json::to_string(profile).unwrap_or_default()
            ))
        };
        Box::pin(std::future::ready(result))
    }
}
