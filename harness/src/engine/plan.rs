//! Which selected scenarios this environment can run: each scenario's requirements (a stack
//! profile, a mesh to join, a second user, another client, a published test key, a part to
//! disrupt) against what the environment and its control offer. The rest are left out with
//! the reason, never run to fail for want of a capability, never passed silently.

use crate::control::StackControl;
use crate::env::Endpoints;
use crate::events::LeftOut;
use crate::policy::StackProfile;
use crate::scenario::{Requirement, Scenario, Suite, qualified_name};

/// The scenarios to run, and those left out. Scenarios needing the same stack profile run
/// together (profiles in the order they first appear): every profile switch restarts
/// components, so the stack switches once per profile rather than once per change in the
/// catalog's order. (Within a profile the engine runs side by side those that may, then the
/// rest one at a time: see [`super::Engine::run_on`].)
pub struct Plan<'a> {
    pub run: Vec<(&'a Suite, &'a Scenario)>,
    pub left_out: Vec<LeftOut>,
}

pub fn plan<'a>(
    selection: Vec<(&'a Suite, &'a Scenario)>,
    endpoints: &Endpoints,
    control: &dyn StackControl,
) -> Plan<'a> {
    let met = |need: Requirement, suite: &Suite, scenario: &Scenario| match need {
        Requirement::StackProfile => control.accepts_profile(
            &scenario.profile(suite),
            scenario.requirements(suite).contains(&Requirement::Mesh),
        ),
        Requirement::Mesh => endpoints.mesh.is_some() || endpoints.mesh_callers.is_some(),
        Requirement::MeshCertificates => endpoints.mesh.is_some(),
        Requirement::OutsideCallerInMesh => {
            endpoints.mesh.is_some()
                || endpoints
                    .mesh_callers
                    .as_ref()
                    .is_some_and(|c| c.outside_mesh.is_some())
        }
        Requirement::SecondUser => endpoints.second_user.is_some(),
        Requirement::OtherClient => endpoints.other_client.is_some(),
        Requirement::SigningKey => endpoints.signing_key.is_some(),
        Requirement::Disrupt(part, disruption) => control.can_disrupt(part, disruption),
        Requirement::ConfigFiles => control.has_config_files(),
        Requirement::SessionRefresh => endpoints.session_refresh.is_some(),
    };
    let mut plan = Plan {
        run: Vec::new(),
        left_out: Vec::new(),
    };
    let mut by_profile: Vec<(StackProfile, Vec<(&'a Suite, &'a Scenario)>)> = Vec::new();
    for (suite, scenario) in selection {
        let unmet: Vec<String> = scenario
            .requirements(suite)
            .into_iter()
            .filter(|need| !met(*need, suite, scenario))
            .map(Requirement::unmet)
            .collect();
        if unmet.is_empty() {
            let profile = scenario.profile(suite);
            match by_profile.iter_mut().find(|(p, _)| *p == profile) {
                Some((_, group)) => group.push((suite, scenario)),
                None => by_profile.push((profile, vec![(suite, scenario)])),
            }
        } else {
            plan.left_out.push(LeftOut {
                scenario: qualified_name(suite, scenario),
                reason: unmet.join("; "),
            });
        }
    }
    plan.run = by_profile
        .into_iter()
        .flat_map(|(_, group)| group)
        .collect();
    plan
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::env::existing::ExistingEnvironment;

    /// An existing deployment with a kube context and a pod to call from: the mesh scenarios
    /// written for the policy its file declares run by exec; the rest are left out, each with
    /// its reason.
    #[test]
    fn an_existing_mesh_runs_the_scenarios_of_its_declared_policy() {
        let parsed = ExistingEnvironment::parse(
            "with-mesh.yaml",
            include_str!("../../tests/data/existing/with-mesh.yaml"),
            Path::new("/etc/meshauth"),
            &|name| matches!(name, "CS" | "PW").then(|| format!("{name}-value")),
        )
        .unwrap();
        let catalog = crate::scenario::Catalog::builtin();
        let plan = plan(catalog.select(&[]), parsed.endpoints(), &parsed.control());
        let ran = |name: &str| {
            plan.run
                .iter()
                .any(|(suite, scenario)| qualified_name(suite, scenario) == name)
        };
        let reason = |name: &str| {
            plan.left_out
                .iter()
                .find(|l| l.scenario == name)
                .map(|l| l.reason.clone())
                .unwrap_or_default()
        };
        for cell in ["without_jwt", "with_valid_jwt", "with_forged_jwt"] {
            assert!(ran(&format!(
                "seed003_mesh_matrix::strict_ra_rp__sleep_{cell}"
            )));
            assert!(
                reason(&format!("seed003_mesh_matrix::strict_ra__sleep_{cell}"))
                    .contains("declares (mesh.policy)")
            );
        }
        assert!(
            reason("seed003_mesh_matrix::strict_ra_rp__outside_without_jwt")
                .contains("mesh.outside_caller")
        );
        assert!(
            reason("attack_mesh_transport::untrusted_ca_is_rejected")
                .contains("certificates the harness mints")
        );
        // Scenarios that do not call into the mesh run whatever policy is declared.
        assert!(ran("seed000_browser_sso::browser_login"));
    }
}
