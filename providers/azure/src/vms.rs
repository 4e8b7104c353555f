//! VM ↔ Node: resource names, the status table from ARM's provisioning and power states to
//! `NodeState`, the node of a VM with the addresses of its NIC and public IP, and the listing
//! of a group's nodes with their power states.

use std::collections::HashMap;

use clusterctl_core::{
    Result,
    model::{ClusterName, Node, NodeState, Role},
    tags,
};

use crate::{
    AzureProvider,
    api::{Arm, COMPUTE_API, NETWORK_API, Nic, PublicIp, Vm},
    errors::ArmError,
};

/// Fill in the power state of those `vms` whose provisioning succeeded (a stopped VM is still
/// billed: `status` says so) from one listing of the subscription's VMs with `statusOnly=true`,
/// which gives every VM's instance view at once, instead of one instance-view read per VM. No
/// request when no VM needs it (creating, failed, deleting).
pub async fn add_power_states(arm: &Arm, vms: &mut [Vm]) -> Result<(), ArmError> {
    let needed = |v: &Vm| {
        v.properties.instance_view.is_none()
            && v.properties
                .provisioning_state
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case("Succeeded"))
    };
    if !vms.iter().any(needed) {
        return Ok(());
    }
    let statuses: Vec<Vm> = arm
        .list(
            &format!("{}/providers/Microsoft.Compute/virtualMachines", arm.sub()),
            COMPUTE_API,
            &[("statusOnly", "true")],
        )
        .await?;
    let views: HashMap<String, crate::api::InstanceView> = statuses
        .into_iter()
        .filter_map(|v| Some((v.id.to_ascii_lowercase(), v.properties.instance_view?)))
        .collect();
    for vm in vms.iter_mut().filter(|v| needed(v)) {
        vm.properties.instance_view = views.get(&vm.id.to_ascii_lowercase()).cloned();
    }
    Ok(())
}

/// The cluster's own resource group.
pub fn group_name(cluster: &ClusterName) -> String {
    format!("clusterctl-{cluster}")
}

/// A node's VM (and computer) name: `NAME-scheduler`, `NAME-worker-3`.
pub fn vm_name(cluster: &ClusterName, node: &str) -> String {
    format!("{cluster}-{node}")
}

/// A node's NIC.
pub fn nic_name(cluster: &ClusterName, node: &str) -> String {
    format!("{cluster}-{node}-nic")
}

/// The scheduler's public IP.
pub fn public_ip_name(cluster: &ClusterName) -> String {
    format!("{cluster}-scheduler-ip")
}

/// The network security group.
pub fn nsg_name(cluster: &ClusterName) -> String {
    format!("{cluster}-nsg")
}

/// The VNet clusterctl makes when no `--subnet` is given.
pub fn vnet_name(cluster: &ClusterName) -> String {
    format!("{cluster}-vnet")
}

/// The node state of a VM from its provisioning state and, when known, its power state
/// (`PowerState/running`…, from an instance view).
pub fn map_state(provisioning: Option<&str>, power: Option<&str>) -> NodeState {
    let power = power.map(|p| p.trim_start_matches("PowerState/").to_ascii_lowercase());
    match provisioning.map(str::to_ascii_lowercase).as_deref() {
        Some("failed") => NodeState::Failed("its creation failed (provisioning state Failed)".into()),
        Some("deleting") => NodeState::Stopping,
        Some("canceled") => NodeState::Failed("its creation was canceled".into()),
        Some("succeeded") => match power.as_deref() {
            Some("stopped") | Some("stopping") => NodeState::Failed(
                "powered off, still billed until down (Azure bills a stopped VM until it is deallocated or deleted)".into(),
            ),
            Some("deallocated") | Some("deallocating") => {
                NodeState::Failed("deallocated".into())
            }
            Some("starting") => NodeState::Pending,
            _ => NodeState::Running,
        },
        _ => NodeState::Pending,
    }
}

fn epoch(time: &str) -> Option<u64> {
    // ARM writes `2026-12-03T11:00:00.1234567+00:00`; the seconds are enough.
    let head: String = time.chars().take(19).collect();
    humantime::parse_rfc3339_weak(&format!("{head}Z"))
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// The node of a VM (`None` when its tags do not say its role), with the addresses of its
/// primary NIC (`nics` and `ips` by lowercase ARM id).
pub fn node_of(
    vm: &Vm,
    nics: &HashMap<String, Nic>,
    ips: &HashMap<String, PublicIp>,
) -> Option<Node> {
    let role: Role = vm.tags.get(tags::ROLE)?.parse().ok()?;
    let name = vm
        .tags
        .get(tags::NODE)
        .cloned()
        .unwrap_or_else(|| role.as_str().to_string());
    let nic = vm
        .properties
        .network_profile
        .as_ref()
        .and_then(|p| p.network_interfaces.first())
        .and_then(|r| nics.get(&r.id.to_ascii_lowercase()));
    let public_ip = nic
        .and_then(Nic::public_ip_id)
        .and_then(|id| ips.get(&id.to_ascii_lowercase()))
        .and_then(|p| p.properties.ip_address.clone());
    let power = vm.properties.instance_view.as_ref().and_then(|v| {
        v.statuses
            .iter()
            .find(|s| s.code.starts_with("PowerState/"))
            .map(|s| s.code.clone())
    });
    Some(Node {
        id: vm.id.clone(),
        name,
        role,
        state: map_state(
            vm.properties.provisioning_state.as_deref(),
            power.as_deref(),
        ),
        private_ip: nic.and_then(Nic::private_ip),
        public_ip,
        created_at: vm.properties.time_created.as_deref().and_then(epoch),
        tags: vm.tags.clone(),
    })
}

/// The nodes of VMs, sorted by role, worker index and name.
pub fn nodes_of(vms: &[Vm], nics: &[Nic], ips: &[PublicIp]) -> Vec<Node> {
    let nics: HashMap<String, Nic> = nics
        .iter()
        .map(|n| (n.id.to_ascii_lowercase(), n.clone()))
        .collect();
    let ips: HashMap<String, PublicIp> = ips
        .iter()
        .map(|p| (p.id.to_ascii_lowercase(), p.clone()))
        .collect();
    let mut nodes: Vec<Node> = vms.iter().filter_map(|v| node_of(v, &nics, &ips)).collect();
    nodes.sort_by_key(|n| {
        (
            n.role,
            clusterctl_core::lifecycle::worker_index(&n.name).unwrap_or(u32::MAX),
            n.name.clone(),
        )
    });
    nodes
}

impl AzureProvider {
    /// The nodes of `cluster` in `group` (all clusterctl nodes there with `None`).
    pub(crate) async fn nodes_in(
        &self,
        group: &str,
        cluster: Option<&ClusterName>,
    ) -> Result<Vec<Node>> {
        let base = self.arm.group(group);
        let vms: Vec<Vm> = match self
            .arm
            .list(
                &format!("{base}/providers/Microsoft.Compute/virtualMachines"),
                COMPUTE_API,
                &[],
            )
            .await
        {
            Ok(v) => v,
            Err(e) if e.is_not_found() => return Ok(Vec::new()),
            Err(e) => return Err(self.err(e)),
        };
        let mut vms: Vec<Vm> = vms
            .into_iter()
            .filter(|v| match cluster {
                Some(c) => v.tags.get(tags::CLUSTER).is_some_and(|t| t == c.as_str()),
                None => v
                    .tags
                    .get(tags::MANAGED)
                    .is_some_and(|t| t == tags::MANAGED_VALUE),
            })
            .collect();
        if vms.is_empty() {
            return Ok(Vec::new());
        }
        let (power, (nics, ips)) = futures_util::future::join(
            add_power_states(&self.arm, &mut vms),
            futures_util::future::join(
                self.arm.list::<Nic>(
                    &format!("{base}/providers/Microsoft.Network/networkInterfaces"),
                    NETWORK_API,
                    &[],
                ),
                self.arm.list::<PublicIp>(
                    &format!("{base}/providers/Microsoft.Network/publicIPAddresses"),
                    NETWORK_API,
                    &[],
                ),
            ),
        )
        .await;
        power.map_err(|e| self.err(e))?;
        Ok(nodes_of(&vms, &self.or_empty(nics)?, &self.or_empty(ips)?))
    }

    fn or_empty<T>(&self, r: std::result::Result<Vec<T>, ArmError>) -> Result<Vec<T>> {
        match r {
            Ok(v) => Ok(v),
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(self.err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states() {
        assert_eq!(map_state(Some("Creating"), None), NodeState::Pending);
        assert_eq!(map_state(None, None), NodeState::Pending);
        assert_eq!(map_state(Some("Succeeded"), None), NodeState::Running);
        assert_eq!(
            map_state(Some("Succeeded"), Some("PowerState/running")),
            NodeState::Running
        );
        assert_eq!(
            map_state(Some("Succeeded"), Some("PowerState/starting")),
            NodeState::Pending
        );
        assert!(matches!(
            map_state(Some("Succeeded"), Some("PowerState/stopped")),
            NodeState::Failed(r) if r.contains("bills")
        ));
        assert!(matches!(
            map_state(Some("Succeeded"), Some("PowerState/deallocated")),
            NodeState::Failed(_)
        ));
        assert!(matches!(
            map_state(Some("Failed"), None),
            NodeState::Failed(_)
        ));
        assert_eq!(map_state(Some("Deleting"), None), NodeState::Stopping);
    }

    #[test]
    fn a_vm_becomes_a_node_with_its_addresses() {
        let vm: Vm = serde_json::from_value(serde_json::json!({
            "id": "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/c-scheduler",
            "name": "c-scheduler",
            "tags": {"clusterctl-role": "scheduler", "clusterctl-node": "scheduler", "clusterctl-protocol": "tls"},
            "properties": {"provisioningState": "Succeeded", "timeCreated": "2026-03-01T10:00:00.1234567+00:00",
                "networkProfile": {"networkInterfaces": [{"id": "/S/NIC"}]}}
        }))
        .unwrap();
        let nic: Nic = serde_json::from_value(serde_json::json!({
            "id": "/s/nic", "name": "nic",
            "properties": {"ipConfigurations": [{"properties": {"privateIPAddress": "10.42.0.4",
                "publicIPAddress": {"id": "/s/ip"}}}]}
        }))
        .unwrap();
        let ip: PublicIp = serde_json::from_value(
            serde_json::json!({"id": "/s/IP", "properties": {"ipAddress": "10.251.0.9"}}),
        )
        .unwrap();
        let nodes = nodes_of(&[vm], &[nic], &[ip]);
        assert_eq!(nodes.len(), 1);
        let n = &nodes[0];
        assert_eq!((n.role, n.name.as_str()), (Role::Scheduler, "scheduler"));
        assert_eq!(n.private_ip.as_deref(), Some("10.42.0.4"));
        assert_eq!(n.public_ip.as_deref(), Some("10.251.0.9"));
        assert_eq!(n.created_at, Some(1_772_359_200));
        assert_eq!(n.state, NodeState::Running);
    }
}
