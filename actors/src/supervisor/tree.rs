//! The supervision tree as the engine reports it (`EngineHandle::tree`, the API's
//! `/api/v1/tree`): each actor's role, state, restarts and last error.

use serde::Serialize;

/// One node of the supervision tree as shown by the engine's `tree()`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TreeNode {
    /// The actor's role and, for pollers, its remote.
    pub name: String,
    /// `running`, `restarting`, `failed`, `stopped`.
    pub state: String,
    /// How often this slot was restarted.
    pub restarts: u32,
    /// The last failure's text.
    pub last_error: Option<String>,
    /// Children, in start order.
    pub children: Vec<TreeNode>,
}

impl TreeNode {
    /// The direct child named `name` (`"remote_supervisor"`, `"poller:pve-1"`, …).
    pub fn child(&self, name: &str) -> Option<&TreeNode> {
        self.children.iter().find(|c| c.name == name)
    }
}
