//! Tenancy read model: organizations (teams, users and keys join it later).

use events::{EventEnvelope, EventPayload};

use crate::{Projection, Sql};

pub struct Tenancy;

impl Projection for Tenancy {
    fn name(&self) -> &'static str {
        "tenancy"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["read.organizations"]
    }

    fn statements(&self, event: &EventEnvelope) -> Vec<Sql> {
        let Some(org_id) = event.org_id else {
            return vec![];
        };
        let at = event.occurred_at;
        let version = event.stream_version;
        match &event.payload {
            EventPayload::OrganizationCreated(e) => vec![Sql::new(
                "INSERT INTO read.organizations (id, name, slug, owner_email, version, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (id) DO NOTHING",
                vec![
                    Box::new(org_id),
                    Box::new(e.name.clone()),
                    Box::new(e.slug.clone()),
                    Box::new(e.owner_email.clone()),
                    Box::new(version),
                    Box::new(at),
                ],
            )],
            EventPayload::OrganizationUpdated(e) => vec![Sql::new(
                "UPDATE read.organizations
                 SET name = COALESCE($2, name), slug = COALESCE($3, slug),
                     owner_email = COALESCE($4, owner_email), version = $5, updated_at = $6
                 WHERE id = $1 AND version < $5",
                vec![
                    Box::new(org_id),
                    Box::new(e.name.clone()),
                    Box::new(e.slug.clone()),
                    Box::new(e.owner_email.clone()),
                    Box::new(version),
                    Box::new(at),
                ],
            )],
            EventPayload::OrganizationDeleted(_) => vec![Sql::new(
                "UPDATE read.organizations SET deleted_at = $2, updated_at = $2, version = $3
                 WHERE id = $1 AND version < $3",
                vec![Box::new(org_id), Box::new(at), Box::new(version)],
            )],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::organization::*;
    use events::Actor;
    use uuid::Uuid;

    fn event(payload: EventPayload, version: i64) -> EventEnvelope {
        let id = Uuid::now_v7();
        EventEnvelope::new(
            payload,
            Some(id),
            format!("organization:{id}"),
            version,
            Actor::system(),
            "t".into(),
        )
    }

    #[test]
    fn every_organization_event_maps_to_one_guarded_statement() {
        let created = event(
            EventPayload::OrganizationCreated(OrganizationCreated {
                name: "A".into(),
                slug: "a-1".into(),
                owner_email: None,
            }),
            1,
        );
        let sql = Tenancy.statements(&created);
        assert_eq!(sql.len(), 1);
        assert!(sql[0].text.contains("ON CONFLICT (id) DO NOTHING"));

        for payload in [
            EventPayload::OrganizationUpdated(OrganizationUpdated::default()),
            EventPayload::OrganizationDeleted(OrganizationDeleted::default()),
        ] {
            let sql = Tenancy.statements(&event(payload, 2));
            assert_eq!(sql.len(), 1);
            assert!(
                sql[0].text.contains("version < $"),
                "older events must not overwrite newer state"
            );
        }
    }
}
