//! What a user can choose for Fargate (network, ECS cluster, roles, logs, market, architecture),
//! the task sizes Fargate sells, and the validation of both before anything is created.

use clusterctl_core::{Error, Result, model::NodeSize};
use serde::{Deserialize, Serialize};

use crate::options::validate_network;

/// Fargate settings beyond the common cluster spec. Serialized into the local record so that
/// `scale` and `down` act like `up` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FargateOptions {
    /// Region (else the AWS configuration's).
    pub region: Option<String>,
    /// VPC to use (else the subnets' VPC, else the default VPC).
    pub vpc: Option<String>,
    /// Subnets for the tasks' network interfaces.
    pub subnets: Vec<String>,
    /// CIDRs allowed to reach the scheduler and dashboard ports.
    pub allow_cidrs: Vec<String>,
    /// An existing ECS cluster to run the tasks in (else one per cluster is created).
    pub ecs_cluster: Option<String>,
    /// An existing task execution role (else one per cluster is created).
    pub execution_role_arn: Option<String>,
    /// An existing task role, the identity of the Dask code.
    pub task_role_arn: Option<String>,
    /// Policies for a task role created for the cluster (when no `task_role_arn` is given).
    pub task_role_policies: Vec<String>,
    /// An existing CloudWatch log group (else `/clusterctl/<name>` is created).
    pub log_group: Option<String>,
    /// Retention of a created log group, in days.
    pub log_retention_days: Option<i32>,
    /// Keep the created log group on `down`.
    pub keep_logs: bool,
    /// Workers on FARGATE_SPOT (the scheduler always on-demand).
    pub spot: bool,
    /// `x86_64` or `arm64`.
    pub architecture: Option<String>,
}

/// Default scheduler size: 1 vCPU, 4 GiB.
pub const DEFAULT_SCHEDULER: TaskSize = TaskSize {
    cpu: 1024,
    memory: 4096,
};
/// Default worker size: 4 vCPU, 16 GiB.
pub const DEFAULT_WORKER: TaskSize = TaskSize {
    cpu: 4096,
    memory: 16384,
};
/// Default retention of a created log group.
pub const DEFAULT_LOG_RETENTION_DAYS: i32 = 7;
/// Retention values CloudWatch Logs accepts.
const RETENTIONS: &[i32] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

/// A Fargate task size: CPU units (1024 = 1 vCPU) and MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskSize {
    /// CPU units.
    pub cpu: u32,
    /// Memory, MiB.
    pub memory: u64,
}

/// Fargate's CPU values and, for each, the memory range (MiB) and step it allows.
const COMBINATIONS: &[(u32, u64, u64, u64)] = &[
    (256, 512, 2048, 512),
    (512, 1024, 4096, 1024),
    (1024, 2048, 8192, 1024),
    (2048, 4096, 16384, 1024),
    (4096, 8192, 30720, 1024),
    (8192, 16384, 61440, 4096),
    (16384, 32768, 122880, 8192),
];

fn allowed_memory(cpu: u32) -> Option<Vec<u64>> {
    let &(_, lo, hi, step) = COMBINATIONS.iter().find(|c| c.0 == cpu)?;
    let mut v: Vec<u64> = (lo..=hi).step_by(step as usize).collect();
    if cpu == 256 {
        // 256 CPU units take 512, 1024 or 2048 MiB (not 1536).
        v.retain(|m| *m != 1536);
    }
    Some(v)
}

fn gib(mib: u64) -> String {
    if mib.is_multiple_of(1024) {
        format!("{}GiB", mib / 1024)
    } else {
        format!("{mib}MiB")
    }
}

impl std::fmt::Display for TaskSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} vCPU, {}",
            f64::from(self.cpu) / 1024.0,
            gib(self.memory)
        )
    }
}

/// The task size for a requested node size: `--*-cpus` (whole vCPUs) and `--*-memory` must be a
/// combination Fargate sells; a missing half is filled in (4 GiB per vCPU, or the smallest CPU
/// that allows the memory). `what` names the flags in errors.
pub fn task_size(size: &NodeSize, default: TaskSize, what: &'static str) -> Result<TaskSize> {
    let cpus_list = || {
        COMBINATIONS
            .iter()
            .filter(|c| c.0 >= 1024)
            .map(|c| (c.0 / 1024).to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let cpu = match size.cpus {
        None => None,
        Some(n) => {
            let units = n.checked_mul(1024).filter(|u| allowed_memory(*u).is_some());
            Some(units.ok_or_else(|| {
                Error::invalid(
                    what,
                    format!("{n} vCPUs"),
                    "Fargate tasks have 1, 2, 4, 8 or 16 vCPUs",
                    Some(format!("use one of {}", cpus_list())),
                )
            })?)
        }
    };
    match (cpu, size.memory_mib) {
        (None, None) => Ok(default),
        (Some(cpu), Some(memory)) => {
            let allowed = allowed_memory(cpu).unwrap_or_default();
            if allowed.contains(&memory) {
                Ok(TaskSize { cpu, memory })
            } else {
                let &(_, lo, hi, step) = COMBINATIONS.iter().find(|c| c.0 == cpu).unwrap_or(&(0, 0, 0, 1));
                Err(Error::invalid(
                    what,
                    format!("{} vCPUs with {}", cpu / 1024, gib(memory)),
                    "Fargate has no such combination",
                    Some(format!(
                        "with {} vCPUs use {} to {} in steps of {}",
                        cpu / 1024,
                        gib(lo),
                        gib(hi),
                        gib(step)
                    )),
                ))
            }
        }
        (Some(cpu), None) => {
            let allowed = allowed_memory(cpu).unwrap_or_default();
            let want = u64::from(cpu) * 4;
            let memory = allowed
                .iter()
                .copied()
                .find(|m| *m >= want)
                .or_else(|| allowed.last().copied())
                .unwrap_or(want);
            Ok(TaskSize { cpu, memory })
        }
        (None, Some(memory)) => COMBINATIONS
            .iter()
            .filter(|c| c.0 >= 1024)
            .find(|c| allowed_memory(c.0).is_some_and(|m| m.contains(&memory)))
            .map(|c| TaskSize { cpu: c.0, memory })
            .ok_or_else(|| {
                Error::invalid(
                    what,
                    gib(memory),
                    "no Fargate task size has exactly this memory",
                    Some(
                        "use whole GiB from 2GiB to 30GiB, or multiples of 4GiB up to 60GiB, or of 8GiB up to 120GiB"
                            .into(),
                    ),
                )
            }),
    }
}

/// The ECS CPU architecture value for `--cpu-architecture`.
pub fn architecture(value: Option<&str>) -> Result<&'static str> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None | Some("x86_64") | Some("amd64") => Ok("X86_64"),
        Some("arm64") | Some("aarch64") => Ok("ARM64"),
        Some(_) => Err(Error::invalid(
            "--cpu-architecture",
            value.unwrap_or_default(),
            "not an architecture Fargate runs",
            Some("use `x86_64` or `arm64`".into()),
        )),
    }
}

fn validate_arn(what: &'static str, arn: &str, service: &str, resource: &str) -> Result<()> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[2] == service
        && parts[5].starts_with(resource)
        && parts[5].len() > resource.len();
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            what,
            arn,
            format!("not an ARN of the form arn:aws:{service}::<account>:{resource}<name>"),
            Some(format!(
                "pass the full ARN, e.g. arn:aws:{service}::123456789012:{resource}my-{}",
                resource.trim_end_matches('/')
            )),
        ))
    }
}

impl FargateOptions {
    /// Check the values that can be checked without AWS.
    pub fn validate(&self, private: bool) -> Result<()> {
        validate_network(
            &self.allow_cidrs,
            private,
            self.vpc.as_deref(),
            &self.subnets,
        )?;
        if let Some(a) = &self.execution_role_arn {
            validate_arn("--execution-role-arn", a, "iam", "role/")?;
        }
        if let Some(a) = &self.task_role_arn {
            validate_arn("--task-role-arn", a, "iam", "role/")?;
            if !self.task_role_policies.is_empty() {
                return Err(Error::invalid(
                    "--task-role-policy",
                    self.task_role_policies.join(","),
                    "policies are attached only to a task role clusterctl creates, not to --task-role-arn",
                    Some("attach them to your role yourself, or drop --task-role-arn".into()),
                ));
            }
        }
        for p in &self.task_role_policies {
            validate_arn("--task-role-policy", p, "iam", "policy/")?;
        }
        if let Some(c) = &self.ecs_cluster
            && (c.is_empty()
                || c.len() > 255
                || !c
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "-_:/".contains(ch)))
        {
            return Err(Error::invalid(
                "--ecs-cluster",
                c,
                "not an ECS cluster name or ARN",
                None,
            ));
        }
        if let Some(g) = &self.log_group
            && (g.is_empty()
                || g.len() > 512
                || !g
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "_-/.#".contains(ch)))
        {
            return Err(Error::invalid(
                "--log-group",
                g,
                "not a CloudWatch Logs group name",
                None,
            ));
        }
        if let Some(d) = self.log_retention_days
            && !RETENTIONS.contains(&d)
        {
            return Err(Error::invalid(
                "--log-retention-days",
                d.to_string(),
                "CloudWatch Logs does not offer this retention",
                Some("use 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, ... days".into()),
            ));
        }
        architecture(self.architecture.as_deref())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(cpus: Option<u32>, memory_mib: Option<u64>) -> Result<TaskSize> {
        task_size(
            &NodeSize { cpus, memory_mib },
            DEFAULT_WORKER,
            "--worker-cpus/--worker-memory",
        )
    }

    #[test]
    fn combinations_follow_fargate() {
        assert_eq!(size(None, None).unwrap(), DEFAULT_WORKER);
        assert_eq!(
            size(Some(1), None).unwrap(),
            TaskSize {
                cpu: 1024,
                memory: 4096
            }
        );
        assert_eq!(
            size(Some(4), None).unwrap(),
            TaskSize {
                cpu: 4096,
                memory: 16384
            }
        );
        assert_eq!(
            size(Some(16), None).unwrap(),
            TaskSize {
                cpu: 16384,
                memory: 65536
            }
        );
        assert_eq!(
            size(Some(2), Some(16384)).unwrap(),
            TaskSize {
                cpu: 2048,
                memory: 16384
            }
        );
        assert_eq!(
            size(None, Some(3072)).unwrap(),
            TaskSize {
                cpu: 1024,
                memory: 3072
            }
        );
        assert_eq!(
            size(None, Some(20480)).unwrap(),
            TaskSize {
                cpu: 4096,
                memory: 20480
            }
        );
        assert_eq!(
            size(None, Some(40960)).unwrap(),
            TaskSize {
                cpu: 8192,
                memory: 40960
            }
        );
        assert_eq!(allowed_memory(256).unwrap(), vec![512, 1024, 2048]);
        assert_eq!(allowed_memory(8192).unwrap().len(), 12);
    }

    #[test]
    fn impossible_sizes_name_the_value_and_the_fix() {
        let e = size(Some(3), None).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("3 vCPUs"), "{e}");
        let e = size(Some(1), Some(16384)).unwrap_err();
        assert!(e.to_string().contains("1 vCPUs with 16GiB"), "{e}");
        assert!(e.hints()[0].contains("2GiB to 8GiB"), "{:?}", e.hints());
        let e = size(Some(8), Some(18432)).unwrap_err();
        assert!(e.hints()[0].contains("steps of 4GiB"), "{:?}", e.hints());
        assert!(size(None, Some(1000)).is_err());
        assert!(size(Some(u32::MAX), None).is_err());
    }

    #[test]
    fn options_are_checked_before_anything_exists() {
        let ok = FargateOptions {
            allow_cidrs: vec!["203.0.113.7/32".into()],
            ..Default::default()
        };
        ok.validate(false).unwrap();
        assert!(FargateOptions::default().validate(false).is_err());
        FargateOptions::default().validate(true).unwrap();
        let bad = |o: FargateOptions| o.validate(true).unwrap_err().exit_code();
        assert_eq!(
            bad(FargateOptions {
                execution_role_arn: Some("my-role".into()),
                ..Default::default()
            }),
            2
        );
        assert_eq!(
            bad(FargateOptions {
                task_role_arn: Some("arn:aws:iam::123456789012:role/app".into()),
                task_role_policies: vec!["arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess".into()],
                ..Default::default()
            }),
            2
        );
        assert_eq!(
            bad(FargateOptions {
                log_retention_days: Some(8),
                ..Default::default()
            }),
            2
        );
        assert_eq!(
            bad(FargateOptions {
                architecture: Some("riscv".into()),
                ..Default::default()
            }),
            2
        );
        FargateOptions {
            task_role_policies: vec!["arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess".into()],
            architecture: Some("arm64".into()),
            log_retention_days: Some(30),
            ..Default::default()
        }
        .validate(true)
        .unwrap();
    }
}
