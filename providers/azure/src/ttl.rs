//! The TTL that ends billing without clusterctl. A VM that powers itself off on Azure is stopped
//! but still allocated and billed, so in a resource group clusterctl made the scheduler VM gets
//! a system-assigned managed identity, `up` gives that identity Contributor on the cluster's
//! group only (a deterministic assignment name, `principalType: ServicePrincipal` so that a new
//! identity not yet replicated is accepted), and the scheduler's end-of-life step
//! (`clusterctl_core::expiry`, `templates/azure_delete_group.py`) deletes the group through ARM
//! with a token from the instance metadata service at the TTL (or after `--idle-timeout`). The
//! assignment lives in the group and goes with it (`down` deletes the group). In a group the user
//! named (`--resource-group`), or with `--azure-ttl-mode power-off`, nothing deletes the group:
//! the VMs power off and stay billed.
//!
//! Creating the role assignment needs `Microsoft.Authorization/roleAssignments/write`, which
//! Contributor lacks: [`AzureProvider::check_grant_permission`] asks ARM's permissions API for
//! the caller's effective actions before anything is created and refuses (exit 2) naming the
//! missing action and the two ways out.

use std::time::Duration;

use clusterctl_core::{
    Error, Result,
    bootstrap::{BootIntent, BootLayout, scheduler_intent},
    expiry::{self, ExpiryHook},
    model::{ClusterName, ClusterSpec, ProviderKind},
    tls::TlsBundle,
};
use serde_json::{Value, json};

use crate::{
    AzureProvider,
    api::{Arm, RESOURCES_API},
    errors,
    options::{TTL_DELETE_GROUP, TTL_POWER_OFF},
    vms,
};

/// api-version of Microsoft.Authorization role assignments.
pub const AUTHORIZATION_API: &str = "2022-04-01";
/// The built-in role Contributor: it may delete the group (and everything in it), and cannot
/// grant access to anyone.
pub const CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";
/// The instance metadata service as a VM reaches it.
pub const IMDS: &str = "http://169.254.169.254";
/// How long the node keeps trying to delete its group (a new role assignment may take minutes
/// to apply); the scheduler VM's own power-off comes this much after the TTL.
pub const HOOK_DEADLINE: Duration = Duration::from_secs(600);

const DELETE_SCRIPT: &str = include_str!("../../../templates/azure_delete_group.py");

impl AzureProvider {
    /// The scheduler's boot intent: with the group's self-deletion in a group clusterctl made.
    pub(crate) fn scheduler_boot(
        &self,
        spec: &ClusterSpec,
        layout: &BootLayout,
        tls: Option<&TlsBundle>,
    ) -> BootIntent {
        let intent = scheduler_intent(spec, layout, tls);
        match self.expiry_hook(&spec.name) {
            Some(hook) => expiry::with_hook(intent, layout, &hook),
            None => intent,
        }
    }

    /// Whether the cluster deletes its own group at the TTL: its own group, and not
    /// `--azure-ttl-mode power-off`.
    pub(crate) fn self_deleting(&self) -> bool {
        self.own_group() && !self.options.ttl_power_off()
    }

    /// The scheduler's end-of-life step: delete the cluster's own group (none in a group the
    /// user named, nor with `--azure-ttl-mode power-off`).
    pub(crate) fn expiry_hook(&self, cluster: &ClusterName) -> Option<ExpiryHook> {
        if !self.self_deleting() {
            return None;
        }
        let group = vms::group_name(cluster);
        let url = format!(
            "{}{}?api-version={RESOURCES_API}",
            self.endpoint.trim_end_matches('/'),
            self.arm.group(&group)
        );
        Some(ExpiryHook {
            describe: format!(
                "the scheduler VM deletes the resource group {group} through ARM with its managed identity"
            ),
            script: DELETE_SCRIPT.to_string(),
            config: json!({
                "imds": IMDS,
                "resource": crate::audience(&self.endpoint),
                "url": url,
                "deadline_seconds": HOOK_DEADLINE.as_secs(),
            }),
            deadline: HOOK_DEADLINE,
        })
    }

    /// What happens at the TTL, for `--dry-run`.
    pub(crate) fn ttl_note(&self, cluster: &ClusterName) -> String {
        if self.own_group() && self.options.ttl_power_off() {
            return power_off_note(&vms::group_name(cluster));
        }
        ttl_note(
            self.own_group(),
            &self
                .options
                .resource_group
                .clone()
                .unwrap_or_else(|| vms::group_name(cluster)),
        )
    }

    /// The role assignment `up` makes once the scheduler VM (and so its identity) exists.
    pub(crate) fn grant(&self, cluster: &ClusterName) -> Option<Grant> {
        self.self_deleting().then(|| Grant {
            arm: self.arm.clone(),
            scope: self.arm.group(&vms::group_name(cluster)),
            location: self.options.location.clone().unwrap_or_default(),
            identity: self.identity.get().cloned(),
        })
    }

    /// Refuse before anything exists when the identity may not create the role assignment the
    /// self-deleting TTL needs. ARM's permissions API (`Permissions_ListForResourceGroup`) gives
    /// the caller's effective actions at the cluster's group; the group does not exist yet, so
    /// when ARM answers 404 the same extension resource is read at the subscription (whose
    /// assignments the new group inherits). When neither answers, the check is skipped: the
    /// assignment's own refusal then rolls `up` back.
    pub(crate) async fn check_grant_permission(&self, cluster: &ClusterName) -> Result<()> {
        if !self.self_deleting() {
            return Ok(());
        }
        let group = self.arm.group(&vms::group_name(cluster));
        let path = |scope: &str| format!("{scope}/providers/Microsoft.Authorization/permissions");
        let mut scope = group.clone();
        let mut got: std::result::Result<Vec<Permission>, _> =
            self.arm.list(&path(&scope), AUTHORIZATION_API, &[]).await;
        if got.as_ref().is_err_and(|e| e.is_not_found()) {
            scope = self.arm.sub();
            got = self.arm.list(&path(&scope), AUTHORIZATION_API, &[]).await;
        }
        let Ok(permissions) = got else {
            return Ok(());
        };
        if allows(&permissions, ASSIGN_ACTION) {
            return Ok(());
        }
        let identity = self
            .identity
            .get()
            .cloned()
            .unwrap_or_else(|| self.arm.credential().source().describe());
        Err(Error::invalid(
            "--azure-ttl-mode",
            TTL_DELETE_GROUP,
            format!(
                "the cluster deletes its own resource group at its TTL through a role assignment `up` creates, but {identity} lacks `{ASSIGN_ACTION}` at {scope} (Contributor does not have it); nothing was created"
            ),
            Some(format!(
                "give the identity a role with {ASSIGN_ACTION} on the subscription (Owner, User Access Administrator or Role Based Access Control Administrator), or pass `--azure-ttl-mode {TTL_POWER_OFF}`: then the VMs only power off at the TTL and Azure keeps billing them (compute, disks, public IP) until `clusterctl down`"
            )),
        ))
    }
}

/// The action a role assignment's creation needs.
pub const ASSIGN_ACTION: &str = "Microsoft.Authorization/roleAssignments/write";

/// One entry of ARM's permissions answer (`PermissionGetResult.value[]`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Permission {
    /// Allowed actions (wildcards `*`).
    pub actions: Vec<String>,
    /// Actions taken out of `actions` of the same entry.
    pub not_actions: Vec<String>,
}

/// Whether any entry allows `action`: one of its `actions` matches and none of its
/// `notActions` does (Azure RBAC's rule; matching is case-insensitive, `*` any text).
pub fn allows(permissions: &[Permission], action: &str) -> bool {
    permissions.iter().any(|p| {
        p.actions.iter().any(|a| wildcard(a, action))
            && !p.not_actions.iter().any(|n| wildcard(n, action))
    })
}

fn wildcard(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.to_ascii_lowercase(), text.to_ascii_lowercase());
    let parts: Vec<&str> = p.split('*').collect();
    if parts.len() == 1 {
        return p == t;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !t.starts_with(first) || t.len() < first.len() + last.len() || !t.ends_with(last) {
        return false;
    }
    let mut rest = &t[first.len()..t.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// What happens at the TTL with `--azure-ttl-mode power-off` in the cluster's own group.
pub fn power_off_note(group: &str) -> String {
    format!(
        "--azure-ttl-mode power-off: at the TTL the VMs only power off; they stay allocated and \
         Azure KEEPS BILLING them (compute as when running, plus disks and the public IP) until \
         `clusterctl down` deletes the resource group {group}; no role assignment is made"
    )
}

/// What happens at the TTL: in the cluster's own group, the group deletes itself; in a group
/// the user named, the VMs power off and stay billed.
pub fn ttl_note(own_group: bool, group: &str) -> String {
    if own_group {
        format!(
            "at the TTL (or after --idle-timeout) the scheduler VM deletes the resource group {group} \
             itself through ARM, with its system-assigned managed identity (role Contributor on \
             that group only, assigned by `up`): all billing ends without clusterctl; this needs \
             permission to create role assignments (Owner, User Access Administrator or Role Based \
             Access Control Administrator)"
        )
    } else {
        format!(
            "at the TTL the nodes power off, but nothing deletes them in the existing group {group} \
             (clusterctl deletes only a group it made): Azure bills a stopped VM until it is \
             deallocated or deleted, so run `clusterctl down` (or `down --expired`)"
        )
    }
}

/// A role assignment to make for the scheduler's identity, owned so that it can follow the
/// scheduler VM's creation in the background.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    arm: Arm,
    scope: String,
    location: String,
    identity: Option<String>,
}

impl Grant {
    /// Give `principal` Contributor on the group (idempotent: a deterministic name).
    pub async fn assign(&self, principal: &str) -> Result<()> {
        let role = format!(
            "{}/providers/Microsoft.Authorization/roleDefinitions/{CONTRIBUTOR}",
            self.arm.sub()
        );
        let path = format!(
            "{}/providers/Microsoft.Authorization/roleAssignments/{}",
            self.scope,
            assignment_name(&self.scope, principal, CONTRIBUTOR)
        );
        let body = json!({"properties": {
            "roleDefinitionId": role,
            "principalId": principal,
            // A new identity may not have replicated yet: without the type ARM may answer
            // PrincipalNotFound.
            "principalType": "ServicePrincipal",
        }});
        match self
            .arm
            .put::<_, Value>(&path, AUTHORIZATION_API, &body, false)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let denied = e.code().as_deref() == Some("AuthorizationFailed");
                let mapped = errors::map(
                    e,
                    errors::Context {
                        location: Some(&self.location),
                        identity: self.identity.as_deref(),
                    },
                );
                Err(if denied {
                    Error::PermissionDenied {
                        provider: ProviderKind::Azure,
                        action: "giving the scheduler VM's identity a role on the cluster's resource group (its TTL deletes the group)".into(),
                        message: format!(
                            "{mapped}; creating role assignments needs Owner, User Access Administrator or Role Based Access Control Administrator on the subscription"
                        ),
                    }
                } else {
                    mapped
                })
            }
        }
    }
}

/// The principal id in a VM PUT's answer (`identity.principalId`).
pub(crate) fn principal_of(vm: &Value) -> Option<String> {
    vm.pointer("/identity/principalId")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
}

/// A deterministic GUID for the assignment of `role` to `principal` at `scope` (RFC 9562
/// version 8: FNV-1a 128 of the three, case-insensitively), so a repeated `up` step PUTs the same
/// assignment instead of a second one.
pub fn assignment_name(scope: &str, principal: &str, role: &str) -> String {
    let mut h: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for b in format!("{scope}|{principal}|{role}")
        .to_ascii_lowercase()
        .bytes()
    {
        h ^= u128::from(b);
        h = h.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    let h = (h & !(0xf << 76) | (0x8 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let x = format!("{h:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_names_are_stable_guids() {
        let a = assignment_name("/subscriptions/s/resourceGroups/g", "p-1", CONTRIBUTOR);
        assert_eq!(
            a,
            assignment_name("/subscriptions/S/resourcegroups/G", "P-1", CONTRIBUTOR)
        );
        assert_ne!(
            a,
            assignment_name("/subscriptions/s/resourceGroups/g", "p-2", CONTRIBUTOR)
        );
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('8'), "version 8: {a}");
        assert!("89ab".contains(&parts[3][..1]), "RFC variant: {a}");
    }

    #[test]
    fn the_ttl_note_says_what_ends_billing() {
        assert!(ttl_note(true, "clusterctl-x").contains("deletes the resource group clusterctl-x"));
        let other = ttl_note(false, "mine");
        assert!(
            other.contains("power off") && other.contains("bills"),
            "{other}"
        );
        assert!(other.contains("existing group mine"), "{other}");
    }

    #[test]
    fn permissions_follow_azure_rbac_matching() {
        let p = |a: &[&str], n: &[&str]| Permission {
            actions: a.iter().map(|s| s.to_string()).collect(),
            not_actions: n.iter().map(|s| s.to_string()).collect(),
        };
        let owner = p(&["*"], &[]);
        let contributor = p(
            &["*"],
            &[
                "Microsoft.Authorization/*/Delete",
                "Microsoft.Authorization/*/Write",
                "Microsoft.Authorization/elevateAccess/Action",
            ],
        );
        let uaa = p(&["*/read", "Microsoft.Authorization/*"], &[]);
        assert!(allows(&[owner], ASSIGN_ACTION));
        assert!(!allows(std::slice::from_ref(&contributor), ASSIGN_ACTION));
        assert!(allows(&[contributor.clone(), uaa], ASSIGN_ACTION));
        assert!(allows(
            &[contributor],
            "Microsoft.Compute/virtualMachines/write"
        ));
        assert!(!allows(&[], ASSIGN_ACTION));
        assert!(wildcard("*/read", "Microsoft.Compute/virtualMachines/read"));
        assert!(!wildcard(
            "*/read",
            "Microsoft.Compute/virtualMachines/write"
        ));
        assert!(power_off_note("g").contains("KEEPS BILLING"));
    }

    #[test]
    fn the_principal_comes_from_the_put_answer() {
        let vm = json!({"identity": {"type": "SystemAssigned", "principalId": "abc"}});
        assert_eq!(principal_of(&vm).as_deref(), Some("abc"));
        assert_eq!(principal_of(&json!({})), None);
    }
}
