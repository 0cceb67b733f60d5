//! Provisioning the people who sign in with single sign-on, through the normal command path:
//! a person seen for the first time becomes a user (`user.created`) with the roles their groups
//! map to (`user.role_assigned`); on a later sign-in the roles single sign-on manages follow the
//! groups again (`user.role_assigned` / `user.role_removed`). Every event names the person as
//! its actor and carries the request's id.

use std::collections::BTreeSet;

use axum::http::{HeaderMap, StatusCode};
use events::{Actor, ActorType, StreamId, StreamKind};
use platform::access::Role;
use platform::auth::KeyPrincipal;
use platform::sso::{BoxFuture, Provision, Provisioned, Provisioner, SsoUser};
use platform::{ApiError, Principal};
use uuid::Uuid;

use crate::command::{load, Aggregate, Ctx};
use crate::organizations::aggregate::{self as org_aggregate, EmailAddress, Organization};
use crate::users::aggregate::{self as user_aggregate, Command, User};
use crate::users::{email_claim, EMAIL_SCOPE};
use crate::CommandState;

/// The command API's [`Provisioner`].
pub struct JournalProvisioner {
    state: CommandState,
}

impl JournalProvisioner {
    pub fn new(state: CommandState) -> Self {
        Self { state }
    }

    async fn run(&self, request: Provision) -> Result<Provisioned, ApiError> {
        let email = EmailAddress::parse(&request.email).map_err(ApiError::unauthorized)?;
        // Two first requests of one person race on the email claim or the user's version; the
        // loser reads what the winner wrote and decides again (usually nothing).
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.once(&request, &email).await {
                Err(e) if e.status == StatusCode::CONFLICT && attempt < 3 => continue,
                other => return other,
            }
        }
    }

    async fn once(
        &self,
        request: &Provision,
        email: &EmailAddress,
    ) -> Result<Provisioned, ApiError> {
        let org = load::<Organization>(&self.state, &org_aggregate::stream_id(request.org_id))
            .await?
            .state;
        if !org.exists() {
            return Err(ApiError::unauthorized("The organization no longer exists."));
        }
        let holder = self
            .state
            .journal
            .claim_holder(EMAIL_SCOPE, &email_claim(request.org_id, email))
            .await?;
        let existing = holder
            .and_then(|s| s.parse::<StreamId>().ok())
            .and_then(|s| s.uuid_of(StreamKind::User));
        let user_id = existing.unwrap_or_else(Uuid::now_v7);
        let ctx = Ctx {
            state: self.state.clone(),
            principal: Principal::ApiKey(KeyPrincipal {
                key_id: user_id,
                org_id: request.org_id,
                owner_user_id: Some(user_id),
                team_id: None,
                // Not consulted: provisioning decides on its own what the configuration allows.
                permissions: BTreeSet::new(),
                team_permissions: BTreeSet::new(),
                plan: request.plan,
                limits: platform::ratelimit::KeyLimits::of_plan(request.plan),
                sso: Some(Box::new(SsoUser {
                    user_id,
                    email: email.as_str().to_string(),
                })),
            }),
            actor: Actor {
                kind: ActorType::User,
                id: user_id.to_string(),
                ip: request.ip.clone(),
            },
            request_id: request.request_id.clone(),
            headers: HeaderMap::new(),
        };
        let stream = user_aggregate::stream_id(user_id);
        let mut batch = ctx.batch();
        let (mut user, mut version) = match existing {
            Some(id) => {
                let loaded = load::<User>(&self.state, &user_aggregate::stream_id(id)).await?;
                (loaded.state, loaded.version)
            }
            None => (User::default(), 0),
        };
        if existing.is_none() {
            crate::users::create_with_id(
                &mut batch,
                user_id,
                request.org_id,
                email,
                request.name.clone(),
            )?;
            user = batch.events().iter().fold(user, Aggregate::apply);
            version = user.version;
        }
        let held: BTreeSet<Role> = user
            .roles
            .iter()
            .filter(|(_, team)| team.is_none())
            .filter_map(|(role, _)| role.parse().ok())
            .collect();
        let mut payloads = Vec::new();
        let mut state = user.clone();
        let changes = request
            .desired
            .difference(&held)
            .map(|r| Command::AssignRole {
                role: r.as_str().to_string(),
                team_id: None,
            })
            .chain(
                held.intersection(&request.managed)
                    .filter(|r| !request.desired.contains(r))
                    .map(|r| Command::RemoveRole {
                        role: r.as_str().to_string(),
                        team_id: None,
                    }),
            );
        for change in changes {
            let decided = state
                .decide(change)
                .map_err(crate::users::routes::user_error)?;
            for payload in &decided {
                let event = events::EventEnvelope::new(
                    payload.clone(),
                    Some(request.org_id),
                    stream.clone(),
                    state.version + 1,
                    ctx.actor.clone(),
                    ctx.request_id.clone(),
                );
                state = state.apply(&event);
            }
            payloads.extend(decided);
        }
        batch.push(&stream, Some(request.org_id), version, payloads);
        if !batch.is_empty() {
            tracing::info!(org_id = %request.org_id, user_id = %user_id, new = existing.is_none(),
                "single sign-on: user provisioned or its roles synced with its groups");
            batch.commit().await?;
        }
        let mut roles: BTreeSet<Role> = state
            .roles
            .iter()
            .filter(|(_, team)| team.is_none())
            .filter_map(|(role, _)| role.parse().ok())
            .collect();
        if org.owners.contains(&user_id) {
            roles.insert(Role::Owner);
        }
        Ok(Provisioned { user_id, roles })
    }
}

impl Provisioner for JournalProvisioner {
    fn provision(&self, request: Provision) -> BoxFuture<'_, Result<Provisioned, ApiError>> {
        Box::pin(self.run(request))
    }
}
