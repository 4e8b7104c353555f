//! What both AWS providers create so that a cluster's nodes can read their private keys and
//! nothing else: IAM roles (and EC2's instance profile) tagged for the cluster, and the SSM
//! SecureString parameters that hold the keys. Each is created tagged, found by name, and
//! deleted only when its tags say clusterctl made it for this cluster.

use std::collections::BTreeMap;

use aws_sdk_ssm::types::ParameterType;
use clusterctl_core::{Error, Result, model::ClusterName, model::ProviderKind, tags};
use serde_json::json;

use crate::errors::{self, code};

/// Path of the IAM roles and instance profiles clusterctl creates.
pub const ROLE_PATH: &str = "/clusterctl/";
/// The inline policy of a created role that lets it read the cluster's secrets.
pub const SECRETS_POLICY: &str = "clusterctl-secrets";

/// Whether tags found on a resource say clusterctl made it for `cluster`.
pub fn ours(found: &BTreeMap<String, String>, cluster: &ClusterName) -> bool {
    found.get(tags::MANAGED).map(String::as_str) == Some(tags::MANAGED_VALUE)
        && found.get(tags::CLUSTER).map(String::as_str) == Some(cluster.as_str())
}

fn iam_tags(role_tags: &[aws_sdk_iam::types::Tag]) -> BTreeMap<String, String> {
    role_tags
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect()
}

fn tag_list<T>(
    cluster_tags: &BTreeMap<String, String>,
    build: impl Fn(&str, &str) -> std::result::Result<T, aws_smithy_types::error::operation::BuildError>,
) -> Result<Vec<T>> {
    cluster_tags
        .iter()
        .map(|(k, v)| {
            build(k, v).map_err(|e| Error::Runtime {
                message: format!("building a tag failed: {e}"),
                hint: None,
            })
        })
        .collect()
}

/// The trust policy of a role that the AWS service `service` (e.g. `ec2.amazonaws.com`)
/// assumes.
fn trust_policy(service: &str) -> String {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": service},
            "Action": "sts:AssumeRole"
        }]
    })
    .to_string()
}

/// The policy that reads the SecureString parameters under `prefix` and nothing else.
pub fn read_secrets_policy(partition: &str, region: &str, account: &str, prefix: &str) -> String {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": "ssm:GetParameters",
            "Resource": format!("arn:{partition}:ssm:{region}:{account}:parameter{prefix}*")
        }]
    })
    .to_string()
}

/// A role to create: its name, the service that assumes it, and its policies.
#[derive(Debug)]
pub struct RoleSpec<'a> {
    pub name: &'a str,
    /// The service principal that assumes it (`ec2.amazonaws.com`, `ecs-tasks.amazonaws.com`).
    pub service: &'a str,
    pub description: String,
    /// Managed policy ARNs to attach.
    pub managed: &'a [String],
    /// Inline policies: (name, document).
    pub inline: &'a [(&'a str, String)],
}

/// The IAM and SSM clients of one provider, with its errors mapped for it.
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    pub iam: &'a aws_sdk_iam::Client,
    pub ssm: &'a aws_sdk_ssm::Client,
    pub kind: ProviderKind,
    pub region: &'a str,
    /// The caller, named in permission errors.
    pub identity: Option<&'a str>,
}

impl Access<'_> {
    fn map<E, R>(&self, operation: &str, err: aws_sdk_iam::error::SdkError<E, R>) -> Error
    where
        E: aws_sdk_iam::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        errors::with_identity(
            errors::map_for(self.kind, operation, self.region, err),
            self.identity,
        )
    }

    fn not_ours(&self, what: &str, name: &str, cluster: &ClusterName) -> Error {
        Error::invalid(
            "--name",
            cluster.as_str(),
            format!("the IAM {what} {name} exists and was not made by clusterctl for this cluster"),
            Some("choose another --name".into()),
        )
    }

    /// Create (or reuse, when its tags say it is this cluster's) a role, and put its
    /// policies. Returns its ARN.
    pub async fn ensure_role(
        &self,
        role: &RoleSpec<'_>,
        cluster: &ClusterName,
        cluster_tags: &BTreeMap<String, String>,
    ) -> Result<String> {
        let out = self
            .iam
            .create_role()
            .role_name(role.name)
            .path(ROLE_PATH)
            .assume_role_policy_document(trust_policy(role.service))
            .description(&role.description)
            .set_tags(Some(tag_list(cluster_tags, |k, v| {
                aws_sdk_iam::types::Tag::builder().key(k).value(v).build()
            })?))
            .send()
            .await;
        let arn = match out {
            Ok(out) => out.role().map(|r| r.arn().to_string()),
            Err(e) if code(&e) == Some("EntityAlreadyExists") => {
                let found = self
                    .iam
                    .get_role()
                    .role_name(role.name)
                    .send()
                    .await
                    .map_err(|e| self.map("iam:GetRole", e))?;
                let found = found.role();
                if !ours(
                    &iam_tags(found.map(|r| r.tags()).unwrap_or_default()),
                    cluster,
                ) {
                    return Err(self.not_ours("role", role.name, cluster));
                }
                found.map(|r| r.arn().to_string())
            }
            Err(e) => return Err(self.map("iam:CreateRole", e)),
        }
        .ok_or_else(|| Error::Provider {
            provider: self.kind,
            operation: "iam:CreateRole".into(),
            message: "no role in the response".into(),
        })?;
        for policy in role.managed {
            self.iam
                .attach_role_policy()
                .role_name(role.name)
                .policy_arn(policy)
                .send()
                .await
                .map_err(|e| self.map("iam:AttachRolePolicy", e))?;
        }
        for (policy_name, document) in role.inline {
            self.iam
                .put_role_policy()
                .role_name(role.name)
                .policy_name(*policy_name)
                .policy_document(document)
                .send()
                .await
                .map_err(|e| self.map("iam:PutRolePolicy", e))?;
        }
        Ok(arn)
    }

    /// Delete a role clusterctl made for `cluster` (its tags say so), with its policies; any
    /// other role is left alone.
    pub async fn delete_role(&self, name: &str, cluster: &ClusterName) -> Result<()> {
        let role = match self.iam.get_role().role_name(name).send().await {
            Ok(r) => r,
            Err(e) if code(&e) == Some("NoSuchEntity") => return Ok(()),
            Err(e) => return Err(self.map("iam:GetRole", e)),
        };
        if !ours(
            &iam_tags(role.role().map(|r| r.tags()).unwrap_or_default()),
            cluster,
        ) {
            return Ok(());
        }
        let attached = self
            .iam
            .list_attached_role_policies()
            .role_name(name)
            .send()
            .await
            .map_err(|e| self.map("iam:ListAttachedRolePolicies", e))?;
        for p in attached.attached_policies() {
            if let Some(arn) = p.policy_arn() {
                self.iam
                    .detach_role_policy()
                    .role_name(name)
                    .policy_arn(arn)
                    .send()
                    .await
                    .map_err(|e| self.map("iam:DetachRolePolicy", e))?;
            }
        }
        let inline = self
            .iam
            .list_role_policies()
            .role_name(name)
            .send()
            .await
            .map_err(|e| self.map("iam:ListRolePolicies", e))?;
        for p in inline.policy_names() {
            self.iam
                .delete_role_policy()
                .role_name(name)
                .policy_name(p)
                .send()
                .await
                .map_err(|e| self.map("iam:DeleteRolePolicy", e))?;
        }
        match self.iam.delete_role().role_name(name).send().await {
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some("NoSuchEntity") => Ok(()),
            Err(e) => Err(self.map("iam:DeleteRole", e)),
        }
    }

    /// Delete a role clusterctl made for `cluster` whose inline policies are `inline` and which
    /// has no managed policy attached, without listing them: fewer calls than [`delete_role`]
    /// when the role is as clusterctl made it. A role that turns out to hold more (IAM refuses
    /// to delete it) is emptied as [`delete_role`] does.
    ///
    /// [`delete_role`]: Access::delete_role
    pub async fn delete_known_role(
        &self,
        name: &str,
        cluster: &ClusterName,
        inline: &[&str],
    ) -> Result<()> {
        self.delete_role_as_made(name, cluster, inline, &[]).await
    }

    /// [`delete_known_role`] for a role that also has the AWS managed policies `managed` (paths
    /// after `arn:<partition>:iam::aws:`, e.g. `policy/service-role/…`) attached: each is
    /// detached without listing them (one that is not attached is fine).
    ///
    /// [`delete_known_role`]: Access::delete_known_role
    pub async fn delete_role_as_made(
        &self,
        name: &str,
        cluster: &ClusterName,
        inline: &[&str],
        managed: &[&str],
    ) -> Result<()> {
        let role = match self.iam.get_role().role_name(name).send().await {
            Ok(r) => r,
            Err(e) if code(&e) == Some("NoSuchEntity") => return Ok(()),
            Err(e) => return Err(self.map("iam:GetRole", e)),
        };
        if !ours(
            &iam_tags(role.role().map(|r| r.tags()).unwrap_or_default()),
            cluster,
        ) {
            return Ok(());
        }
        // The role's own ARN names the partition of the managed policies.
        let partition = role
            .role()
            .map(|r| r.arn())
            .and_then(|a| a.split(':').nth(1))
            .unwrap_or("aws")
            .to_string();
        for path in managed {
            match self
                .iam
                .detach_role_policy()
                .role_name(name)
                .policy_arn(format!("arn:{partition}:iam::aws:{path}"))
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if code(&e) == Some("NoSuchEntity") => {}
                Err(e) => return Err(self.map("iam:DetachRolePolicy", e)),
            }
        }
        for policy in inline {
            match self
                .iam
                .delete_role_policy()
                .role_name(name)
                .policy_name(*policy)
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if code(&e) == Some("NoSuchEntity") => {}
                Err(e) => return Err(self.map("iam:DeleteRolePolicy", e)),
            }
        }
        match self.iam.delete_role().role_name(name).send().await {
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some("NoSuchEntity") => Ok(()),
            Err(e) if code(&e) == Some("DeleteConflict") => self.delete_role(name, cluster).await,
            Err(e) => Err(self.map("iam:DeleteRole", e)),
        }
    }

    /// Which of `names` are roles clusterctl made for `cluster` that still exist.
    pub async fn roles_left(&self, names: &[String], cluster: &ClusterName) -> Result<Vec<String>> {
        let mut left = Vec::new();
        for name in names {
            match self.iam.get_role().role_name(name).send().await {
                Ok(r) => {
                    if ours(
                        &iam_tags(r.role().map(|r| r.tags()).unwrap_or_default()),
                        cluster,
                    ) {
                        left.push(name.clone());
                    }
                }
                Err(e) if code(&e) == Some("NoSuchEntity") => {}
                Err(e) => return Err(self.map("iam:GetRole", e)),
            }
        }
        Ok(left)
    }

    /// Which of `names` are roles clusterctl made for `cluster` that still exist, from one
    /// listing of the roles under [`ROLE_PATH`] (then each one found is read for its tags).
    pub async fn roles_left_listed(
        &self,
        names: &[String],
        cluster: &ClusterName,
    ) -> Result<Vec<String>> {
        let mut pages = self
            .iam
            .list_roles()
            .path_prefix(ROLE_PATH)
            .into_paginator()
            .send();
        let mut present = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.map("iam:ListRoles", e))?;
            present.extend(
                page.roles()
                    .iter()
                    .map(|r| r.role_name().to_string())
                    .filter(|n| names.contains(n)),
            );
        }
        if present.is_empty() {
            return Ok(present);
        }
        self.roles_left(&present, cluster).await
    }

    /// Create (or reuse, when it is this cluster's) the instance profile `name` holding the
    /// role `role`. Returns its ARN.
    pub async fn ensure_instance_profile(
        &self,
        name: &str,
        role: &str,
        cluster: &ClusterName,
        cluster_tags: &BTreeMap<String, String>,
    ) -> Result<String> {
        let created = self
            .iam
            .create_instance_profile()
            .instance_profile_name(name)
            .path(ROLE_PATH)
            .set_tags(Some(tag_list(cluster_tags, |k, v| {
                aws_sdk_iam::types::Tag::builder().key(k).value(v).build()
            })?))
            .send()
            .await;
        let profile = match created {
            Ok(out) => out.instance_profile().cloned(),
            Err(e) if code(&e) == Some("EntityAlreadyExists") => {
                let found = self
                    .iam
                    .get_instance_profile()
                    .instance_profile_name(name)
                    .send()
                    .await
                    .map_err(|e| self.map("iam:GetInstanceProfile", e))?;
                let found = found.instance_profile().cloned();
                if !ours(
                    &iam_tags(found.as_ref().map(|p| p.tags()).unwrap_or_default()),
                    cluster,
                ) {
                    return Err(self.not_ours("instance profile", name, cluster));
                }
                found
            }
            Err(e) => return Err(self.map("iam:CreateInstanceProfile", e)),
        }
        .ok_or_else(|| Error::Provider {
            provider: self.kind,
            operation: "iam:CreateInstanceProfile".into(),
            message: "no instance profile in the response".into(),
        })?;
        if !profile.roles().iter().any(|r| r.role_name() == role) {
            match self
                .iam
                .add_role_to_instance_profile()
                .instance_profile_name(name)
                .role_name(role)
                .send()
                .await
            {
                Ok(_) => {}
                // A profile holds one role; a repeated bootstrap finds it there already.
                Err(e) if code(&e) == Some("LimitExceeded") => {}
                Err(e) => return Err(self.map("iam:AddRoleToInstanceProfile", e)),
            }
        }
        Ok(profile.arn().to_string())
    }

    /// Delete the instance profile `name` if clusterctl made it for `cluster`, after taking
    /// its roles out. Returns whether one of clusterctl's was found.
    pub async fn delete_instance_profile(&self, name: &str, cluster: &ClusterName) -> Result<()> {
        let found = match self
            .iam
            .get_instance_profile()
            .instance_profile_name(name)
            .send()
            .await
        {
            Ok(p) => p,
            Err(e) if code(&e) == Some("NoSuchEntity") => return Ok(()),
            Err(e) => return Err(self.map("iam:GetInstanceProfile", e)),
        };
        let Some(profile) = found.instance_profile() else {
            return Ok(());
        };
        if !ours(&iam_tags(profile.tags()), cluster) {
            return Ok(());
        }
        for role in profile.roles() {
            match self
                .iam
                .remove_role_from_instance_profile()
                .instance_profile_name(name)
                .role_name(role.role_name())
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if code(&e) == Some("NoSuchEntity") => {}
                Err(e) => return Err(self.map("iam:RemoveRoleFromInstanceProfile", e)),
            }
        }
        match self
            .iam
            .delete_instance_profile()
            .instance_profile_name(name)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some("NoSuchEntity") => Ok(()),
            Err(e) => Err(self.map("iam:DeleteInstanceProfile", e)),
        }
    }

    /// Whether the instance profile `name` that clusterctl made for `cluster` still exists.
    pub async fn instance_profile_left(&self, name: &str, cluster: &ClusterName) -> Result<bool> {
        match self
            .iam
            .get_instance_profile()
            .instance_profile_name(name)
            .send()
            .await
        {
            Ok(p) => Ok(p
                .instance_profile()
                .is_some_and(|p| ours(&iam_tags(p.tags()), cluster))),
            Err(e) if code(&e) == Some("NoSuchEntity") => Ok(false),
            Err(e) => Err(self.map("iam:GetInstanceProfile", e)),
        }
    }

    /// Store each secret (name → contents) as a SecureString parameter, tagged for the cluster.
    /// A repeated bootstrap of the same `up` overwrites its own parameters.
    pub async fn put_secrets(
        &self,
        secrets: &BTreeMap<String, String>,
        cluster: &ClusterName,
        cluster_tags: &BTreeMap<String, String>,
    ) -> Result<()> {
        for (name, contents) in secrets {
            let created = self
                .ssm
                .put_parameter()
                .name(name)
                .value(contents)
                .r#type(ParameterType::SecureString)
                .description(format!("clusterctl cluster {cluster}: TLS key"))
                .set_tags(Some(tag_list(cluster_tags, |k, v| {
                    aws_sdk_ssm::types::Tag::builder().key(k).value(v).build()
                })?))
                .send()
                .await;
            match created {
                Ok(_) => {}
                Err(e) if code(&e) == Some("ParameterAlreadyExists") => {
                    self.ssm
                        .put_parameter()
                        .name(name)
                        .value(contents)
                        .r#type(ParameterType::SecureString)
                        .overwrite(true)
                        .send()
                        .await
                        .map_err(|e| self.map("ssm:PutParameter", e))?;
                }
                Err(e) => return Err(self.map("ssm:PutParameter", e)),
            }
        }
        Ok(())
    }

    /// The names of the parameters under `prefix` (which ends with `/`).
    pub async fn secret_names(&self, prefix: &str) -> Result<Vec<String>> {
        let mut pages = self
            .ssm
            .get_parameters_by_path()
            .path(prefix.trim_end_matches('/'))
            .recursive(true)
            .into_paginator()
            .send();
        let mut found = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.map("ssm:GetParametersByPath", e))?;
            // The path is a hierarchy on AWS; keep only names under this prefix in any case.
            found.extend(
                page.parameters()
                    .iter()
                    .filter_map(|p| p.name())
                    .filter(|n| n.starts_with(prefix))
                    .map(str::to_string),
            );
        }
        Ok(found)
    }

    /// Delete the parameters `names` without listing them first (names that do not exist are
    /// fine).
    pub async fn delete_secret_names(&self, names: &[String]) -> Result<()> {
        for chunk in names.chunks(10) {
            self.ssm
                .delete_parameters()
                .set_names(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| self.map("ssm:DeleteParameters", e))?;
        }
        Ok(())
    }

    /// Delete every parameter under `prefix`.
    pub async fn delete_secrets(&self, prefix: &str) -> Result<()> {
        let names = self.secret_names(prefix).await?;
        for chunk in names.chunks(10) {
            self.ssm
                .delete_parameters()
                .set_names(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| self.map("ssm:DeleteParameters", e))?;
        }
        Ok(())
    }
}
