//! Component versions as data: the pinned ones, the sets `--versions` compares, and the
//! versions a run used. Reports and events need them, and this room starts and installs
//! nothing, so that they never import the room that does (`components`).

pub mod pinned;
pub mod sets;

use serde::Serialize;

/// Versions of the components a run used, shown in reports.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ComponentVersion {
    pub component: String,
    pub version: String,
    pub source: String,
}
