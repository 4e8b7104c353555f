//! Logs of a Fargate cluster: each task's awslogs stream in CloudWatch Logs, found through
//! the log configuration of its task definition, plus ECS's reason for a stopped task.

use std::collections::BTreeMap;

use clusterctl_core::{
    Result,
    model::{ClusterName, Role},
    provider::{NodeLog, last_lines},
};

use super::{
    FargateProvider,
    tasks::{self, task_id},
};
use crate::errors;

impl FargateProvider {
    /// The last `tail` lines of each task's awslogs stream, and the stop reason of stopped tasks.
    pub(super) async fn task_logs(
        &self,
        cluster: &ClusterName,
        role: Option<Role>,
        tail: usize,
        max_nodes: Option<usize>,
    ) -> Result<Vec<NodeLog>> {
        let mut targets: BTreeMap<String, Option<(String, String)>> = BTreeMap::new();
        let mut logs = Vec::new();
        for t in self
            .describe(Some(cluster))
            .await?
            .into_iter()
            .filter(|t| role.is_none_or(|r| r == t.node.role))
            .take(max_nodes.unwrap_or(usize::MAX))
        {
            let mut lines = Vec::new();
            if let Some(td) = &t.task_definition_arn {
                if !targets.contains_key(td) {
                    targets.insert(td.clone(), self.log_target(td).await?);
                }
                if let Some(Some((group, prefix))) = targets.get(td) {
                    let stream = format!("{prefix}/{}/{}", tasks::CONTAINER, task_id(&t.node.id));
                    match self
                        .logs
                        .get_log_events()
                        .log_group_name(group)
                        .log_stream_name(&stream)
                        .limit(tail.clamp(1, 10_000) as i32)
                        .start_from_head(false)
                        .send()
                        .await
                    {
                        Ok(out) => {
                            let text: Vec<&str> =
                                out.events().iter().filter_map(|e| e.message()).collect();
                            lines = last_lines(&text.join("\n"), tail);
                        }
                        // The container has not written anything yet.
                        Err(e) if errors::code(&e) == Some("ResourceNotFoundException") => {}
                        Err(e) => return Err(self.map("logs:GetLogEvents", e)),
                    }
                }
            }
            if let Some(reason) = &t.stopped_reason {
                lines.push(format!("[ecs] task stopped: {reason}"));
            }
            logs.push(NodeLog {
                node: t.node.name,
                role: t.node.role,
                lines,
            });
        }
        Ok(logs)
    }

    /// The log group and stream prefix a task definition sends logs to.
    async fn log_target(&self, task_definition: &str) -> Result<Option<(String, String)>> {
        let out = self
            .ecs
            .describe_task_definition()
            .task_definition(task_definition)
            .send()
            .await
            .map_err(|e| self.map("ecs:DescribeTaskDefinition", e))?;
        Ok(out
            .task_definition()
            .and_then(|t| t.container_definitions().first())
            .and_then(|c| c.log_configuration())
            .and_then(|l| l.options())
            .and_then(|o| {
                Some((
                    o.get("awslogs-group")?.clone(),
                    o.get("awslogs-stream-prefix")?.clone(),
                ))
            }))
    }
}
