//! Instance containers: their labels, names, security settings and creation, and reading
//! them back (listing, inspecting) as [`Instance`]s.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerSummary, ContainerSummaryStateEnum,
    HostConfig, HostConfigLogConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{CreateContainerOptions, ListContainersOptions};
use paas_core::{
    AppName, Error, Instance, InstanceState, ProcessType, Release, Result, Timestamp, Version,
};

use super::{AddressMode, Inner, ProcessLimits};
use crate::common::{docker_error, image_default_command, is_not_found, labels, short_suffix};
use crate::logs::{lock, LogTarget};

fn target_of_labels(id: &str, l: &HashMap<String, String>) -> Option<LogTarget> {
    Some(LogTarget {
        id: id.to_string(),
        app: AppName::new(l.get(labels::APP)?.as_str()).ok()?,
        process_type: ProcessType::new(l.get(labels::PROCESS_TYPE)?.as_str()).ok()?,
        index: l.get(labels::INDEX)?.parse().ok()?,
    })
}

pub(super) fn target_of_summary(c: &ContainerSummary) -> Option<LogTarget> {
    target_of_labels(c.id.as_deref()?, c.labels.as_ref()?)
}

pub(super) const STOPPING_SUFFIX: &str = "-stopping";
const CREATED_MS_LABEL: &str = "paas.created-ms";

/// Sourced before every Procfile command (Heroku's `.profile.d` convention); `$0` is the
/// command, run by a fresh shell that replaces this one.
const PROFILE_WRAPPER: &str = "for f in /app/.profile.d/*.sh; do if [ -r \"$f\" ]; then . \"$f\"; fi; done; exec /bin/sh -c \"$0\"";

impl Inner {
    pub(super) fn base_filters(
        &self,
        kind: &str,
        app: Option<&AppName>,
    ) -> HashMap<String, Vec<String>> {
        let mut label = vec![
            format!("{}={}", labels::PLATFORM, self.settings.platform_id),
            format!("{}={kind}", labels::KIND),
        ];
        if let Some(app) = app {
            label.push(format!("{}={app}", labels::APP));
        }
        HashMap::from([("label".to_string(), label)])
    }

    pub(super) async fn list_containers(
        &self,
        app: Option<&AppName>,
        kind: &str,
    ) -> Result<Vec<ContainerSummary>> {
        let options = ListContainersOptions {
            all: true,
            filters: Some(self.base_filters(kind, app)),
            ..Default::default()
        };
        self.docker
            .list_containers(Some(options))
            .await
            .map_err(|e| docker_error(e, "list"))
    }

    pub(super) fn instance_from_summary(&self, c: &ContainerSummary) -> Option<Instance> {
        let l = c.labels.as_ref()?;
        let t = target_of_labels(c.id.as_deref()?, l)?;
        let release = Version(l.get(labels::RELEASE)?.parse().ok()?);
        let stopping = c
            .names
            .as_ref()
            .is_some_and(|n| n.iter().any(|n| n.ends_with(STOPPING_SUFFIX)));
        let state = if stopping {
            InstanceState::Stopping
        } else {
            match c.state {
                Some(ContainerSummaryStateEnum::RUNNING)
                | Some(ContainerSummaryStateEnum::PAUSED) => InstanceState::Running,
                Some(ContainerSummaryStateEnum::CREATED)
                | Some(ContainerSummaryStateEnum::RESTARTING) => InstanceState::Starting,
                Some(ContainerSummaryStateEnum::REMOVING)
                | Some(ContainerSummaryStateEnum::STOPPING) => InstanceState::Stopping,
                _ => InstanceState::Crashed,
            }
        };
        let address = if t.process_type.is_web() && state == InstanceState::Running {
            match self.settings.address_mode {
                AddressMode::ContainerIp => c
                    .network_settings
                    .as_ref()
                    .and_then(|n| n.networks.as_ref())
                    .and_then(|n| n.get(&self.settings.network))
                    .and_then(|e| e.ip_address.as_deref())
                    .and_then(|ip| ip.parse::<IpAddr>().ok())
                    .map(|ip| SocketAddr::new(ip, self.port_of(l))),
                AddressMode::PublishedLoopback => c.ports.as_ref().and_then(|ports| {
                    ports
                        .iter()
                        .find(|p| {
                            p.private_port == self.port_of(l)
                                && p.public_port.is_some()
                                && p.ip.as_deref().is_none_or(|ip| ip == "127.0.0.1")
                        })
                        .and_then(|p| p.public_port)
                        .map(|port| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
                }),
            }
        } else {
            None
        };
        Some(Instance {
            id: t.id,
            app: t.app,
            release,
            process_type: t.process_type,
            index: t.index,
            address,
            state,
            started_at: started_at_of(l, c.created),
        })
    }

    pub(super) fn instance_from_inspect(&self, c: &ContainerInspectResponse) -> Option<Instance> {
        let l = c.config.as_ref()?.labels.as_ref()?;
        let t = target_of_labels(c.id.as_deref()?, l)?;
        let release = Version(l.get(labels::RELEASE)?.parse().ok()?);
        let st = c.state.as_ref();
        let running = st.and_then(|s| s.running).unwrap_or(false);
        let stopping = c
            .name
            .as_deref()
            .is_some_and(|n| n.ends_with(STOPPING_SUFFIX));
        let state = if stopping {
            InstanceState::Stopping
        } else if running {
            InstanceState::Running
        } else if st
            .and_then(|s| s.started_at.as_deref())
            .is_some_and(|s| !s.starts_with("0001"))
        {
            InstanceState::Crashed
        } else {
            InstanceState::Starting
        };
        let address = if t.process_type.is_web() && running {
            let ns = c.network_settings.as_ref();
            match self.settings.address_mode {
                AddressMode::ContainerIp => ns
                    .and_then(|n| n.networks.as_ref())
                    .and_then(|n| n.get(&self.settings.network))
                    .and_then(|e| e.ip_address.as_deref())
                    .and_then(|ip| ip.parse::<IpAddr>().ok())
                    .map(|ip| SocketAddr::new(ip, self.port_of(l))),
                AddressMode::PublishedLoopback => ns
                    .and_then(|n| n.ports.as_ref())
                    .and_then(|p| p.get(&format!("{}/tcp", self.port_of(l))))
                    .and_then(|b| b.as_ref())
                    .and_then(|b| b.iter().find_map(|b| b.host_port.as_deref()?.parse().ok()))
                    .map(|port| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)),
            }
        } else {
            None
        };
        Some(Instance {
            id: t.id,
            app: t.app,
            release,
            process_type: t.process_type,
            index: t.index,
            address,
            state,
            started_at: started_at_of(l, None),
        })
    }

    fn port_of(&self, l: &HashMap<String, String>) -> u16 {
        l.get(labels::PORT)
            .and_then(|p| p.parse().ok())
            .unwrap_or(self.settings.web_port)
    }

    pub(super) fn is_ours(&self, l: Option<&HashMap<String, String>>) -> bool {
        l.is_some_and(|l| {
            l.get(labels::PLATFORM) == Some(&self.settings.platform_id)
                && l.get(labels::KIND).map(String::as_str) == Some(labels::KIND_INSTANCE)
        })
    }

    pub(super) async fn inspect(&self, id: &str) -> Result<Option<ContainerInspectResponse>> {
        match self.docker.inspect_container(id, None).await {
            Ok(c) => Ok(Some(c)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(docker_error(e, "inspect")),
        }
    }

    /// The image's default command string, cached per image reference.
    async fn image_default(&self, image: &str) -> Option<String> {
        if let Some(v) = lock(&self.image_defaults).get(image) {
            return v.clone();
        }
        let v = match self.docker.inspect_image(image).await {
            Ok(img) => img
                .config
                .and_then(|c| image_default_command(c.entrypoint.as_deref(), c.cmd.as_deref())),
            Err(_) => return None,
        };
        lock(&self.image_defaults).insert(image.to_string(), v.clone());
        v
    }

    pub(super) fn security(&self, limits: &ProcessLimits) -> HostConfig {
        HostConfig {
            privileged: Some(false),
            cap_drop: Some(vec!["ALL".into()]),
            cap_add: if self.settings.cap_add.is_empty() {
                None
            } else {
                Some(self.settings.cap_add.clone())
            },
            security_opt: Some(vec!["no-new-privileges:true".into()]),
            memory: limits.memory_bytes,
            memory_swap: limits.memory_bytes,
            cpu_shares: limits.cpu_shares,
            cpu_period: limits.cpu_quota_us.map(|_| 100_000),
            cpu_quota: limits.cpu_quota_us,
            pids_limit: limits.pids,
            init: Some(self.settings.init),
            network_mode: Some(self.settings.network.clone()),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            }),
            log_config: Some(HostConfigLogConfig {
                typ: Some("json-file".into()),
                config: Some(HashMap::from([
                    ("max-size".to_string(), self.settings.log_max_size.clone()),
                    ("max-file".to_string(), "2".to_string()),
                ])),
            }),
            binds: None,
            mounts: None,
            ..Default::default()
        }
    }

    pub(super) fn container_labels(
        &self,
        kind: &str,
        release: &Release,
        ty: &ProcessType,
        index: u32,
    ) -> HashMap<String, String> {
        HashMap::from([
            (labels::PLATFORM.into(), self.settings.platform_id.clone()),
            (labels::KIND.into(), kind.into()),
            (labels::APP.into(), release.app.to_string()),
            (labels::RELEASE.into(), release.version.0.to_string()),
            (labels::PROCESS_TYPE.into(), ty.to_string()),
            (labels::INDEX.into(), index.to_string()),
            (labels::PORT.into(), self.settings.web_port.to_string()),
            (labels::BUILD.into(), release.build.id.to_string()),
            (CREATED_MS_LABEL.into(), Timestamp::now().0.to_string()),
        ])
    }

    pub(super) async fn create_instance(
        &self,
        release: &Release,
        ty: &ProcessType,
        index: u32,
    ) -> Result<String> {
        let command = release.build.procfile.command(ty).ok_or_else(|| {
            Error::invalid(format!(
                "release {} of app \"{}\" has no process type \"{ty}\"",
                release.version, release.app
            ))
        })?;
        let image = release.build.artifact.image.clone();
        let (entrypoint, cmd) = if self.image_default(&image).await.as_deref() == Some(command) {
            (None, None)
        } else {
            (
                Some(vec!["/bin/sh".to_string(), "-c".to_string()]),
                Some(vec![PROFILE_WRAPPER.to_string(), command.to_string()]),
            )
        };
        let mut env: Vec<String> = release
            .config
            .to_env()
            .into_iter()
            .filter(|(k, _)| k != "PORT" && k != "DYNO")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        env.push(format!("DYNO={ty}.{index}"));
        let port = self.settings.web_port;
        let mut host = self.security(self.settings.limits_for(ty));
        let mut exposed = None;
        if ty.is_web() {
            env.push(format!("PORT={port}"));
            exposed = Some(vec![format!("{port}/tcp")]);
            if self.settings.address_mode == AddressMode::PublishedLoopback {
                host.port_bindings = Some(HashMap::from([(
                    format!("{port}/tcp"),
                    Some(vec![PortBinding {
                        host_ip: Some("127.0.0.1".into()),
                        host_port: Some(String::new()),
                    }]),
                )]));
            }
        }
        let name = format!(
            "{}-{}-{ty}.{index}-v{}-{}",
            self.settings.platform_id,
            release.app,
            release.version.0,
            short_suffix()
        );
        let body = ContainerCreateBody {
            image: Some(image),
            entrypoint,
            cmd,
            env: Some(env),
            user: Some(self.settings.user.clone()),
            labels: Some(self.container_labels(labels::KIND_INSTANCE, release, ty, index)),
            exposed_ports: exposed,
            host_config: Some(host),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map_err(|e| docker_error(e, "start"))?;
        Ok(created.id)
    }
}

fn started_at_of(l: &HashMap<String, String>, created_secs: Option<i64>) -> Timestamp {
    l.get(CREATED_MS_LABEL)
        .and_then(|v| v.parse().ok())
        .map(Timestamp)
        .or_else(|| created_secs.map(|s| Timestamp(s.max(0) as u64 * 1000)))
        .unwrap_or_default()
}
