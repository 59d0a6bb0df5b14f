//! OpenAPI schemas (utoipa) of the domain types that travel over the HTTP API, behind the
//! `openapi` feature. Types with a hand-written serde form get a hand-written schema here;
//! plain structs derive theirs next to their definition.

use std::borrow::Cow;

use utoipa::openapi::schema::{
    AdditionalProperties, KnownFormat, Object, ObjectBuilder, SchemaFormat, Type,
};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

use crate::model::{
    AppName, BuildId, CommitId, ConfigKey, DeployStatus, Domain, Formation, LogSource, ProcessType,
    Timestamp, Version,
};

fn string(description: &str, pattern: Option<&str>) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .pattern(pattern)
        .build()
}

macro_rules! schema {
    ($ty:ty, $name:literal, $body:expr) => {
        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                RefOr::T(Schema::Object($body))
            }
        }
        impl ToSchema for $ty {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

schema!(
    AppName,
    "AppName",
    string(
        "An app's name: a DNS label of at most 30 characters",
        Some("^[a-z][a-z0-9-]{0,29}$")
    )
);
schema!(
    ProcessType,
    "ProcessType",
    string(
        "A Procfile process type (`web`, `worker`)",
        Some("^[a-zA-Z0-9_-]+$")
    )
);
schema!(
    ConfigKey,
    "ConfigKey",
    string("A config var's name", Some("^[A-Za-z_][A-Za-z0-9_]*$"))
);
schema!(
    Domain,
    "Domain",
    string("A hostname, or a wildcard `*.example.com`", None)
);
schema!(BuildId, "BuildId", string("A build's id", None));
schema!(CommitId, "CommitId", string("A commit's id (hex)", None));
schema!(
    LogSource,
    "LogSource",
    string(
        "Who wrote a log line: `app[web.1]`, `platform[build]`, `router`",
        None
    )
);
schema!(
    Timestamp,
    "Timestamp",
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
        .description(Some("An RFC 3339 UTC instant with milliseconds"))
        .build()
);
schema!(
    Version,
    "Version",
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1))
        .description(Some("A release's number (`vN` is N)"))
        .build()
);
schema!(
    Formation,
    "Formation",
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(AdditionalProperties::RefOr(RefOr::T(Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0))
                .build()
        )))))
        .description(Some("How many processes of each type run: `{\"web\": 2}`"))
        .build()
);
schema!(
    DeployStatus,
    "DeployStatus",
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "state",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(
                    "`pending`, `succeeded`, `failed` (later versions may add states)"
                ))
                .build(),
        )
        .required("state")
        .property(
            "reason",
            string("Why a deploy failed (with `failed`)", None),
        )
        .description(Some("Whether a release's deploy went through"))
        .build()
);
