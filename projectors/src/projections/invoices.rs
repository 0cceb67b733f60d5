//! Invoices, part of the tenancy projection (commands that write them wait for it): one row per
//! `invoice.issued`, marked paid by `invoice.paid`.

use events::{EventEnvelope, EventPayload};
use uuid::Uuid;

use super::tenancy::parse_time;
use crate::Sql;

pub fn statements(event: &EventEnvelope, org_id: Uuid) -> Option<Vec<Sql>> {
    let version = event.stream_version;
    let sql = match &event.payload {
        EventPayload::InvoiceIssued(e) => {
            let issued_at = parse_time(&e.issued_at).unwrap_or(*event.occurred_at);
            let (status, paid_at, paid_cents) = if e.total_cents == 0 {
                ("paid", Some(issued_at), Some(0_i64))
            } else {
                ("open", None, None)
            };
            vec![Sql::new(
                "INSERT INTO read.invoices (id, org_id, period, plan, currency, status, total_cents, lines, usage,
                     issued_at, paid_at, paid_cents, version)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT (id) DO NOTHING",
                vec![
                    Box::new(e.invoice_id),
                    Box::new(org_id),
                    Box::new(e.period.clone()),
                    Box::new(e.plan.clone()),
                    Box::new(e.currency.clone()),
                    Box::new(status),
                    Box::new(e.total_cents),
                    Box::new(serde_json::to_value(&e.lines).unwrap_or_default()),
                    Box::new(serde_json::to_value(&e.usage).unwrap_or_default()),
                    Box::new(issued_at),
                    Box::new(paid_at),
                    Box::new(paid_cents),
                    Box::new(version),
                ],
            )]
        }
        EventPayload::InvoicePaid(e) => vec![Sql::new(
            "UPDATE read.invoices SET status = 'paid', paid_at = $2, paid_cents = $3, payment_reference = $4,
                 version = $5
             WHERE id = $1 AND version < $5",
            vec![
                Box::new(e.invoice_id),
                Box::new(parse_time(&e.paid_at).unwrap_or(*event.occurred_at)),
                Box::new(e.amount_cents),
                Box::new(e.reference.clone()),
                Box::new(version),
            ],
        )],
        _ => return None,
    };
    Some(sql)
}
