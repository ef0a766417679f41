//! `tasks/pushNotificationConfig/set|get|list|delete`. Configs are stored with the task;
//! their URLs are never contacted here (delivery is the dispatcher's job).

use bindu_engine::store::Access;
use bindu_schemas::jsonrpc::JsonRpcError;
use bindu_schemas::{
    DeleteTaskPushNotificationConfigParams, GetTaskPushNotificationConfigParams,
    PushNotificationConfig, TaskIdParams, TaskPushNotificationConfig,
};

use super::reply::{ok, Answer, Call, Reply};
use crate::error::store_error;
use crate::state::Ingress;

pub(crate) async fn set(
    app: &Ingress,
    id: &Call,
    params: TaskPushNotificationConfig,
    caller: Option<String>,
) -> Result<Reply, JsonRpcError> {
    let mut config = params.push_notification_config;
    config
        .id
        .get_or_insert_with(|| uuid::Uuid::new_v4().to_string());
    // Its webhook gets the payloads of the version that configured it.
    config.a2a_version = payload_version(id);
    let stored = app
        .inner
        .store
        .set_push_config(&params.task_id, Access::Owner(caller.as_deref()), config)
        .await
        .map_err(store_error)?;
    // The webhook dispatcher learns of it in order with the task's events: every event
    // published after this answer is notified.
    if let Err(e) = app.inner.bus.push_configs_changed(&params.task_id).await {
        tracing::warn!(task_id = %params.task_id, error = %e, "could not announce a push config");
        return Err(JsonRpcError::internal(
            "the push notification config was stored, but the task bus could not be told; set it again",
        ));
    }
    ok(
        id,
        Answer::PushConfig(TaskPushNotificationConfig {
            task_id: params.task_id,
            push_notification_config: stored,
        }),
    )
}

pub(crate) async fn get(
    app: &Ingress,
    id: &Call,
    params: GetTaskPushNotificationConfigParams,
    caller: Option<String>,
) -> Result<Reply, JsonRpcError> {
    let configs = configs_of(app, &params.id, caller).await?;
    let found = match &params.push_notification_config_id {
        Some(cid) => configs
            .into_iter()
            .find(|c| c.id.as_deref() == Some(cid.as_str())),
        None => configs.into_iter().next(),
    };
    let Some(config) = found else {
        return Err(JsonRpcError::invalid_params(
            match params.push_notification_config_id {
                Some(cid) => format!(
                    "task {} has no push notification config with id {cid}",
                    params.id
                ),
                None => format!("task {} has no push notification config", params.id),
            },
        ));
    };
    ok(
        id,
        Answer::PushConfig(TaskPushNotificationConfig {
            task_id: params.id,
            push_notification_config: config,
        }),
    )
}

pub(crate) async fn list(
    app: &Ingress,
    id: &Call,
    params: TaskIdParams,
    caller: Option<String>,
) -> Result<Reply, JsonRpcError> {
    let configs = configs_of(app, &params.id, caller).await?;
    let result: Vec<TaskPushNotificationConfig> = configs
        .into_iter()
        .map(|c| TaskPushNotificationConfig {
            task_id: params.id.clone(),
            push_notification_config: c,
        })
        .collect();
    ok(id, Answer::PushConfigs(result))
}

pub(crate) async fn delete(
    app: &Ingress,
    id: &Call,
    params: DeleteTaskPushNotificationConfigParams,
    caller: Option<String>,
) -> Result<Reply, JsonRpcError> {
    // Deleting a config that is already gone is not an error (idempotent).
    app.inner
        .store
        .delete_push_config(
            &params.id,
            Access::Owner(caller.as_deref()),
            &params.push_notification_config_id,
        )
        .await
        .map_err(store_error)?;
    ok(id, Answer::Deleted)
}

/// What a config made by `call` records as its version (see
/// [`PushNotificationConfig::a2a_version`]): 1.0's, or none for 0.3.
pub(crate) fn payload_version(call: &Call) -> Option<String> {
    (call.version == crate::version::Version::V10).then(|| PushNotificationConfig::V10.to_string())
}

/// The push configs of task `task_id`, as `caller` may see them.
async fn configs_of(
    app: &Ingress,
    task_id: &str,
    caller: Option<String>,
) -> Result<Vec<PushNotificationConfig>, JsonRpcError> {
    app.inner
        .store
        .list_push_configs(task_id, Access::Owner(caller.as_deref()))
        .await
        .map_err(store_error)
}
