//! The objects of a cluster, built from the spec and the rendered boot intent: names, labels,
//! the root ConfigMap, the files Secret, the scheduler and worker Pods and the scheduler Service.
//!
//! Every object but the root names the root in its `ownerReferences`, so deleting the root lets
//! the API server's garbage collector remove the rest, even when clusterctl is gone.

use std::collections::BTreeMap;

use clusterctl_core::{
    Error, Result,
    bootstrap::{BootFile, DASHBOARD_PORT, SCHEDULER_PORT},
    container::{ContainerBoot, KILL_AFTER_SECONDS, TTL_GRACE_SECONDS},
    model::{ClusterName, ClusterSpec, Role, now_epoch},
    tags,
};
use k8s_openapi::{
    ByteString,
    api::core::v1::{
        Capabilities, ConfigMap, Container, ContainerPort, EnvVar, HTTPGetAction, KeyToPath,
        Namespace, Pod, PodSecurityContext, PodSpec, Probe, ResourceRequirements, SeccompProfile,
        Secret, SecretVolumeSource, SecurityContext, Service, ServicePort, ServiceSpec, Volume,
        VolumeMount,
    },
    apimachinery::pkg::{
        api::resource::Quantity, apis::meta::v1::ObjectMeta, apis::meta::v1::OwnerReference,
        util::intstr::IntOrString,
    },
};

use crate::options::{KubernetesOptions, ServiceType};

/// Where the node's files (the Secret volume) are mounted in the container.
pub const FILES_ROOT: &str = "/etc/clusterctl";
/// The one container of each pod.
pub const CONTAINER: &str = "dask";
/// Name of the scheduler's comm port (container and Service), as the Dask Kubernetes operator
/// names it (it finds the scheduler's ports by these names).
pub const PORT_COMM: &str = "tcp-comm";
/// Name of the dashboard port (container and Service), as the operator names it.
pub const PORT_DASHBOARD: &str = "http-dashboard";
/// The Secret volume's name.
const FILES_VOLUME: &str = "clusterctl-files";

/// Labels every clusterctl object carries besides the core tags.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "clusterctl");
const APP_NAME: (&str, &str) = ("app.kubernetes.io/name", "dask");
const APP_INSTANCE: &str = "app.kubernetes.io/instance";
const APP_COMPONENT: &str = "app.kubernetes.io/component";
/// Annotation with who started the cluster (user names need not be label values).
pub const OWNER_ANNOTATION: &str = tags::OWNER;
/// Key of the root's data that says how the nodes were made: `pods`, or `operator` (a
/// DaskCluster of the Dask Kubernetes operator).
pub const MODE_KEY: &str = "mode";
/// [`MODE_KEY`]'s value for a DaskCluster.
pub const MODE_OPERATOR: &str = "operator";
/// Label of a namespace that clusterctl created for a cluster (value: the cluster name).
pub const CREATED_NAMESPACE: &str = "clusterctl-created-namespace";

/// Object names of a cluster.
pub mod names {
    use clusterctl_core::model::ClusterName;

    /// The root ConfigMap every other object is owned by.
    pub fn root(c: &ClusterName) -> String {
        format!("{c}-cluster")
    }
    /// The Secret with the nodes' files.
    pub fn files(c: &ClusterName) -> String {
        format!("{c}-files")
    }
    /// The scheduler Pod and its Service.
    pub fn scheduler(c: &ClusterName) -> String {
        format!("{c}-scheduler")
    }
    /// A worker Pod, from the worker's node name (`worker-3`).
    pub fn worker(c: &ClusterName, node: &str) -> String {
        format!("{c}-{node}")
    }
}

/// The label selector of a cluster's objects (or of every clusterctl object).
pub fn selector(cluster: Option<&ClusterName>, role: Option<Role>) -> String {
    let mut s = format!("{}={}", tags::MANAGED, tags::MANAGED_VALUE);
    if let Some(c) = cluster {
        s.push_str(&format!(",{}={c}", tags::CLUSTER));
    }
    if let Some(r) = role {
        s.push_str(&format!(",{}={}", tags::ROLE, r.as_str()));
    }
    s
}

/// Labels of a supporting object of the cluster.
pub fn cluster_labels(spec: &ClusterSpec) -> BTreeMap<String, String> {
    let mut l = tags::cluster_tags(spec);
    l.remove(tags::OWNER);
    l.insert(MANAGED_BY.0.into(), MANAGED_BY.1.into());
    l.insert(APP_NAME.0.into(), APP_NAME.1.into());
    l.insert(APP_INSTANCE.into(), spec.name.to_string());
    l
}

/// Labels of a node's Pod.
pub fn node_labels(spec: &ClusterSpec, role: Role, node: &str) -> BTreeMap<String, String> {
    let mut l = tags::node_tags(spec, role, node);
    l.remove(tags::OWNER);
    l.insert(MANAGED_BY.0.into(), MANAGED_BY.1.into());
    l.insert(APP_NAME.0.into(), APP_NAME.1.into());
    l.insert(APP_INSTANCE.into(), spec.name.to_string());
    l.insert(APP_COMPONENT.into(), role.as_str().into());
    l
}

fn meta(
    name: String,
    namespace: &str,
    labels: BTreeMap<String, String>,
    spec: &ClusterSpec,
    owner: Option<&OwnerReference>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(namespace.to_string()),
        labels: Some(labels),
        annotations: Some(BTreeMap::from([(
            OWNER_ANNOTATION.to_string(),
            spec.owner.clone(),
        )])),
        owner_references: owner.map(|o| vec![o.clone()]),
        ..Default::default()
    }
}

/// The owner reference to the root ConfigMap `name` with `uid`.
pub fn owner_ref(name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: name.into(),
        uid: uid.into(),
        block_owner_deletion: Some(true),
        controller: Some(false),
    }
}

/// A namespace made for the cluster.
pub fn namespace(name: &str, spec: &ClusterSpec) -> Namespace {
    let mut labels = cluster_labels(spec);
    labels.insert(CREATED_NAMESPACE.into(), spec.name.to_string());
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The root object: a ConfigMap describing the cluster (no secrets).
pub fn root(namespace: &str, spec: &ClusterSpec, options: &KubernetesOptions) -> ConfigMap {
    let data = BTreeMap::from([
        ("cluster".to_string(), spec.name.to_string()),
        ("expires-at".into(), spec.expires_at().to_string()),
        (
            "protocol".into(),
            clusterctl_core::bootstrap::scheme(spec).into(),
        ),
        ("dask-version".into(), spec.dask_version.clone()),
        ("image".into(), spec.image.clone()),
        ("service-type".into(), options.service_type.as_str().into()),
        (
            MODE_KEY.into(),
            if options.operator {
                MODE_OPERATOR
            } else {
                "pods"
            }
            .into(),
        ),
    ]);
    ConfigMap {
        metadata: meta(
            names::root(&spec.name),
            namespace,
            cluster_labels(spec),
            spec,
            None,
        ),
        data: Some(data),
        ..Default::default()
    }
}

/// The Secret holding every node file (TLS material and the scheduler's TTL preload), keyed by
/// file name. Pods mount only their role's files from it.
pub fn files_secret(
    namespace: &str,
    spec: &ClusterSpec,
    owner: &OwnerReference,
    files: &[BootFile],
) -> Secret {
    let data = files
        .iter()
        .map(|f| (file_key(f), ByteString(f.contents.clone().into_bytes())))
        .collect();
    Secret {
        metadata: meta(
            names::files(&spec.name),
            namespace,
            cluster_labels(spec),
            spec,
            Some(owner),
        ),
        type_: Some("Opaque".into()),
        immutable: Some(true),
        data: Some(data),
        ..Default::default()
    }
}

/// The Secret key of a file: its base name.
pub fn file_key(f: &BootFile) -> String {
    f.path.rsplit('/').next().unwrap_or(&f.path).to_string()
}

/// Resources of a node: CPUs and MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodSize {
    /// CPUs requested.
    pub cpus: u32,
    /// Memory requested and limited, MiB.
    pub memory_mib: u64,
}

/// What [`node_pod`] needs.
#[derive(Debug)]
pub struct PodInput<'a> {
    /// The cluster.
    pub spec: &'a ClusterSpec,
    /// Namespace.
    pub namespace: &'a str,
    /// Scheduler or worker.
    pub role: Role,
    /// The node's name (`scheduler`, `worker-3`).
    pub node: &'a str,
    /// The container form of the boot intent (no files: those are mounted).
    pub boot: &'a ContainerBoot,
    /// The role's files, mounted from the Secret.
    pub files: &'a [BootFile],
    /// Requests and limits.
    pub size: PodSize,
    /// The root.
    pub owner: &'a OwnerReference,
}

/// Seconds the pod may run from now: until the cluster's expiry, plus the time the entry
/// script's backstop takes, so the platform ends the pod even if everything inside hangs.
pub fn active_deadline(spec: &ClusterSpec) -> i64 {
    let left = spec.expires_at().saturating_sub(now_epoch()).max(1);
    (left + TTL_GRACE_SECONDS + KILL_AFTER_SECONDS) as i64
}

fn octal_mode(mode: &str) -> Result<i32> {
    i32::from_str_radix(mode, 8).map_err(|_| Error::Runtime {
        message: format!("file mode `{mode}` is not octal"),
        hint: None,
    })
}

/// A scheduler or worker Pod.
pub fn node_pod(input: &PodInput<'_>) -> Result<Pod> {
    let PodInput {
        spec,
        namespace,
        role,
        node,
        boot,
        files,
        size,
        owner,
    } = input;
    if !boot.secret_env.is_empty() {
        return Err(Error::Runtime {
            message: "pod files must come from the Secret volume, not the environment".into(),
            hint: None,
        });
    }
    let env = boot
        .env
        .iter()
        .map(|(k, v)| EnvVar {
            name: k.clone(),
            value: Some(v.clone()),
            ..Default::default()
        })
        .collect();
    let memory = Quantity(format!("{}Mi", size.memory_mib));
    let resources = ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity(size.cpus.to_string())),
            ("memory".to_string(), memory.clone()),
        ])),
        // Memory is limited (Dask's own limit matches); CPU is not, so bursts are not throttled.
        limits: Some(BTreeMap::from([("memory".to_string(), memory)])),
        ..Default::default()
    };
    let items = files
        .iter()
        .map(|f| {
            Ok(KeyToPath {
                key: file_key(f),
                path: file_key(f),
                mode: Some(octal_mode(&f.mode)?),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let (volumes, mounts) = if items.is_empty() {
        (None, None)
    } else {
        (
            Some(vec![Volume {
                name: FILES_VOLUME.into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(names::files(&spec.name)),
                    items: Some(items),
                    default_mode: Some(0o400),
                    optional: Some(false),
                }),
                ..Default::default()
            }]),
            Some(vec![VolumeMount {
                name: FILES_VOLUME.into(),
                mount_path: FILES_ROOT.into(),
                read_only: Some(true),
                ..Default::default()
            }]),
        )
    };
    let (ports, probe) = if *role == Role::Scheduler {
        (
            Some(vec![
                ContainerPort {
                    name: Some(PORT_COMM.into()),
                    container_port: SCHEDULER_PORT.into(),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                },
                ContainerPort {
                    name: Some(PORT_DASHBOARD.into()),
                    container_port: DASHBOARD_PORT.into(),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                },
            ]),
            Some(Probe {
                http_get: Some(HTTPGetAction {
                    path: Some("/health".into()),
                    port: IntOrString::String(PORT_DASHBOARD.into()),
                    scheme: Some("HTTP".into()),
                    ..Default::default()
                }),
                period_seconds: Some(2),
                timeout_seconds: Some(2),
                failure_threshold: Some(3),
                ..Default::default()
            }),
        )
    } else {
        (None, None)
    };
    let name = match role {
        Role::Scheduler => names::scheduler(&spec.name),
        Role::Worker => names::worker(&spec.name, node),
    };
    Ok(Pod {
        metadata: meta(
            name,
            namespace,
            node_labels(spec, *role, node),
            spec,
            Some(owner),
        ),
        spec: Some(PodSpec {
            restart_policy: Some("Never".into()),
            active_deadline_seconds: Some(active_deadline(spec)),
            termination_grace_period_seconds: Some(30),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            security_context: Some(PodSecurityContext {
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            containers: vec![Container {
                name: CONTAINER.into(),
                image: Some(spec.image.clone()),
                // `args`, not `command`: the image's entrypoint stays (the Dask images' prepare.sh
                // installs `--pip` requirements, then execs these).
                args: Some(boot.command.clone()),
                env: Some(env),
                ports,
                readiness_probe: probe,
                resources: Some(resources),
                volume_mounts: mounts,
                security_context: Some(SecurityContext {
                    allow_privilege_escalation: Some(false),
                    capabilities: Some(Capabilities {
                        drop: Some(vec!["ALL".into()]),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            volumes,
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The scheduler's Service.
pub fn scheduler_service(
    namespace: &str,
    spec: &ClusterSpec,
    owner: &OwnerReference,
    options: &KubernetesOptions,
) -> Service {
    let selector = BTreeMap::from([
        (tags::CLUSTER.to_string(), spec.name.to_string()),
        (tags::ROLE.to_string(), Role::Scheduler.as_str().to_string()),
    ]);
    let port = |name: &str, number: u16| ServicePort {
        name: Some(name.into()),
        port: number.into(),
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..Default::default()
    };
    let lb = options.service_type == ServiceType::LoadBalancer;
    let mut metadata = meta(
        names::scheduler(&spec.name),
        namespace,
        cluster_labels(spec),
        spec,
        Some(owner),
    );
    if lb && spec.private {
        metadata
            .annotations
            .get_or_insert_with(Default::default)
            .extend(
                INTERNAL_LB_ANNOTATIONS
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string())),
            );
    }
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(options.service_type.as_str().into()),
            selector: Some(selector),
            ports: Some(vec![
                port(PORT_COMM, SCHEDULER_PORT),
                port(PORT_DASHBOARD, DASHBOARD_PORT),
            ]),
            load_balancer_source_ranges: (lb && !options.allow_cidrs.is_empty())
                .then(|| options.allow_cidrs.clone()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What asks the major managed Kubernetes services for an internal load balancer (`--private`
/// with `--service-type LoadBalancer`): EKS (the AWS Load Balancer Controller's scheme, and the
/// legacy in-tree annotation), GKE, AKS. Other platforms ignore them, which is why source
/// ranges are required as well.
pub const INTERNAL_LB_ANNOTATIONS: [(&str, &str); 4] = [
    (
        "service.beta.kubernetes.io/aws-load-balancer-scheme",
        "internal",
    ),
    (
        "service.beta.kubernetes.io/aws-load-balancer-internal",
        "true",
    ),
    ("networking.gke.io/load-balancer-type", "Internal"),
    (
        "service.beta.kubernetes.io/azure-load-balancer-internal",
        "true",
    ),
];

/// Whether an object's labels say it belongs to `cluster`.
pub fn belongs_to(labels: Option<&BTreeMap<String, String>>, cluster: &ClusterName) -> bool {
    labels.is_some_and(|l| {
        l.get(tags::MANAGED).map(String::as_str) == Some(tags::MANAGED_VALUE)
            && l.get(tags::CLUSTER).map(String::as_str) == Some(cluster.as_str())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clusterctl_core::{
        bootstrap::{BootLayout, PIP_ENV, worker_intent},
        container::render_container,
    };

    #[test]
    fn pods_keep_the_image_entrypoint_and_carry_the_pip_requirements() {
        let spec: ClusterSpec = serde_json::from_value(serde_json::json!({
            "name": "t", "workers": 1, "dask_version": "2026.8.0",
            "image": "ghcr.io/dask/dask:2026.8.0-py3.12",
            "scheduler_size": {}, "worker_size": {}, "env": {}, "tags": {}, "owner": "me",
            "created_at": now_epoch(), "ttl": 3600, "idle_timeout": 0, "death_timeout": 60,
            "tls": false, "private": true, "launch": "1-0000abcd",
            "pip": ["xarray>=2024.1", "zarr"],
        }))
        .unwrap();
        let layout = BootLayout {
            dask: vec!["dask".into()],
            files_root: "/etc/clusterctl".into(),
            bind_host: "0.0.0.0".into(),
            scheduler_port: SCHEDULER_PORT,
            dashboard_port: DASHBOARD_PORT,
            nanny: true,
        };
        let intent = worker_intent(
            &spec,
            &layout,
            None,
            "tcp://10.0.0.1:8786",
            Some("worker-0"),
        );
        let boot = render_container(&intent, "/etc/clusterctl").unwrap();
        let pod = node_pod(&PodInput {
            spec: &spec,
            namespace: "ns",
            role: Role::Worker,
            node: "worker-0",
            boot: &boot,
            files: &[],
            size: PodSize {
                cpus: 1,
                memory_mib: 1024,
            },
            owner: &owner_ref("t-cluster", "uid"),
        })
        .unwrap();
        let c = &pod.spec.unwrap().containers[0];
        // A `command` would replace the image's entrypoint, and with it the install.
        assert_eq!(c.command, None);
        assert_eq!(c.args.as_deref(), Some(&boot.command[..]));
        let pip = c
            .env
            .as_ref()
            .unwrap()
            .iter()
            .find(|e| e.name == PIP_ENV)
            .and_then(|e| e.value.clone());
        assert_eq!(pip.as_deref(), Some("xarray>=2024.1 zarr"));
    }
}
