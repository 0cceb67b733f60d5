//! Which organization a query reads: a key's own; the platform admin names one with `?org_id=`.

use platform::{ApiError, Principal};
use uuid::Uuid;

pub fn org(principal: &Principal, raw: Option<&str>) -> Result<Uuid, ApiError> {
    let requested = match raw {
        None | Some("") => None,
        Some(raw) => Some(
            raw.parse::<Uuid>()
                .map_err(|_| ApiError::not_found(format!("No organization with id {raw:?}.")))?,
        ),
    };
    principal.org_scope(requested)
}

/// A timestamp column that may be null.
pub fn time(at: Option<chrono::DateTime<chrono::Utc>>) -> Option<api::Timestamp> {
    at.map(api::Timestamp)
}

/// The `{id}` of a resource path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct IdParam {
    /// The resource's id (a UUID); anything else is 404.
    id: Uuid,
}

/// The id after which a page starts.
pub fn after(page: &platform::pagination::Page) -> Result<Option<Uuid>, ApiError> {
    page.after
        .as_deref()
        .map(|raw| {
            raw.parse::<Uuid>().map_err(|_| {
                ApiError::invalid_param("cursor", "cursor is not one this API returned.")
            })
        })
        .transpose()
}

/// One table of the read models whose rows belong to an organization.
pub struct OrgTable<T> {
    /// `SELECT … FROM read.<table> <alias>`, without a WHERE clause.
    pub select: &'static str,
    /// The table's alias in `select`: its `id` and `org_id` columns are read through it.
    pub alias: &'static str,
    /// The permission reading it takes.
    pub permission: platform::access::Permission,
    /// How a missing row is named in the 404: "user", "team", "API key".
    pub noun: &'static str,
    pub to_json: fn(&tokio_postgres::Row) -> T,
    /// The id a page continues after.
    pub key: fn(&T) -> Uuid,
}

impl<T> OrgTable<T> {
    /// A page of the rows of the caller's organization (or the one the platform admin names),
    /// in id order.
    pub async fn list(
        &self,
        state: &crate::ReadState,
        principal: &Principal,
        org_id: Option<&str>,
        query: &platform::pagination::PageQuery,
    ) -> Result<platform::pagination::List<T>, ApiError> {
        let org_id = org(principal, org_id)?;
        principal.require(self.permission)?;
        let page = query.page()?;
        let after = after(&page)?;
        let client = state.pool.get().await?;
        let a = self.alias;
        let sql = format!(
            "{} WHERE {a}.org_id = $1 AND ($2::uuid IS NULL OR {a}.id > $2) ORDER BY {a}.id LIMIT $3",
            self.select
        );
        let rows = client
            .query(&sql, &[&org_id, &after, &(page.limit + 1)])
            .await?;
        let items = rows.iter().map(self.to_json).collect();
        Ok(platform::pagination::List::from_rows(
            items,
            &page,
            |item: &T| (self.key)(item).to_string(),
        ))
    }

    /// One row the caller may see; anything of another organization is 404.
    pub async fn row(
        &self,
        state: &crate::ReadState,
        principal: &Principal,
        id: Uuid,
    ) -> Result<tokio_postgres::Row, ApiError> {
        let client = state.pool.get().await?;
        let sql = format!("{} WHERE {}.id = $1", self.select, self.alias);
        match client.query_opt(&sql, &[&id]).await? {
            Some(row) if principal.sees(row.get("org_id")) => {
                principal.require(self.permission)?;
                Ok(row)
            }
            _ => Err(ApiError::not_found(format!(
                "No {} with id {id}.",
                self.noun
            ))),
        }
    }
}
