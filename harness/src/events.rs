//! The runner's event stream. The engine emits these; reporters (terminal, JSON, JUnit, HTML)
//! consume them and never call back into the engine.

use serde::Serialize;

use crate::browser::Hop;
use crate::check::CheckResult;
use crate::oidc::DecodedJwt;
use crate::versions::ComponentVersion;

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunEvent {
    RunStarted {
        run_id: String,
        started_at: String,
        environment: EnvironmentInfo,
        selected: usize,
    },
    ScenarioStarted {
        suite: String,
        scenario: String,
        title: String,
        file: String,
    },
    StepFinished {
        suite: String,
        scenario: String,
        step: StepReport,
    },
    ScenarioFinished {
        suite: String,
        scenario: String,
        verdict: Verdict,
        duration_ms: u64,
        /// One line per failed check or error, for summaries.
        failures: Vec<String>,
    },
    RunFinished {
        summary: RunSummary,
    },
}

/// What the run ran against.
#[derive(Debug, Clone, Serialize, Default)]
pub struct EnvironmentInfo {
    pub kind: String,
    pub app_url: String,
    pub idp_url: String,
    pub issuer: String,
    /// The policy profile the deployment was configured with, setting by setting.
    pub profile: Vec<PolicySetting>,
    pub components: Vec<ComponentVersion>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_dir: Option<String>,
    /// Selected scenarios this environment cannot run, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<LeftOut>,
    /// What this environment cannot show, said plainly (e.g. a path a real mesh closes that
    /// loopback processes leave open).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<String>,
}

/// A selected scenario the environment cannot run.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LeftOut {
    /// `suite::id`.
    pub scenario: String,
    pub reason: String,
}

/// One setting of the deployment's policy profile, e.g. `RequestAuthentication` = `on`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PolicySetting {
    pub setting: String,
    pub value: String,
    pub state: SettingState,
    /// For a protection that is off: how to turn it on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// What a setting means for the deployment's protection.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SettingState {
    /// A protection is in place, as the reference deployment has it.
    On,
    /// A protection is off or deliberately broken.
    Off,
    /// A value that protects nothing by itself (a theme, a description).
    Info,
}

impl PolicySetting {
    /// A protection that is on or off.
    pub fn protection(setting: impl Into<String>, enabled: bool) -> Self {
        Self {
            setting: setting.into(),
            value: if enabled { "on" } else { "off" }.into(),
            state: if enabled {
                SettingState::On
            } else {
                SettingState::Off
            },
            fix: None,
        }
    }

    /// A protection that is on or off, with how to turn it on when it is off.
    pub fn protection_or_fix(setting: impl Into<String>, enabled: bool, fix: &str) -> Self {
        Self {
            fix: (!enabled).then(|| fix.to_string()),
            ..Self::protection(setting, enabled)
        }
    }

    pub fn info(setting: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            setting: setting.into(),
            value: value.into(),
            state: SettingState::Info,
            fix: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// 1-based position in the scenario.
    pub index: usize,
    pub op: &'static str,
    /// The step as written, variables expanded, secrets redacted.
    pub summary: String,
    pub passed: bool,
    pub duration_ms: u64,
    pub hops: Vec<Hop>,
    pub checks: Vec<CheckResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt: Option<DecodedJwt>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
}

#[derive(Debug, Clone, Serialize, Default, PartialEq, Eq)]
pub struct RunSummary {
    pub total: usize,
    pub passed: usize,
    pub failed: usize,
    pub duration_ms: u64,
}

impl RunSummary {
    pub fn all_passed(&self) -> bool {
        self.failed == 0
    }
}

/// Anything that consumes events.
pub trait EventSink {
    fn emit(&mut self, event: RunEvent);
}

impl<F: FnMut(RunEvent)> EventSink for F {
    fn emit(&mut self, event: RunEvent) {
        self(event)
    }
}
