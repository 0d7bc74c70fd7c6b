//! The one call this context makes: `orders.since(after_id, limit)`, over IPC (msgpack) or
//! HTTP (JSON), with the errors `variants.rpc.make_proxy` raises: an error answer keeps the
//! callee's code, an unreachable orders is `unavailable`.

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::http::HttpClient;
use crate::ipc::UdsClient;
use crate::rpc::{ErrorBody, Format, ShopError};

/// `contracts.Order`, only the fields a basket needs (the others are skipped, not checked).
#[derive(Debug, Clone, Deserialize)]
pub struct Order {
    pub id: i64,
    pub lines: Vec<OrderLine>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OrderLine {
    pub product_id: i64,
}

pub trait Orders: Send {
    fn since(&mut self, after_id: i64, limit: i64) -> Result<Vec<Order>, ShopError>;
}

pub struct IpcOrders(pub UdsClient);

pub struct HttpOrders(pub HttpClient);

impl Orders for IpcOrders {
    fn since(&mut self, after_id: i64, limit: i64) -> Result<Vec<Order>, ShopError> {
        let args = Format::Msgpack.encode(&(after_id, limit));
        let (ok, body) = self
            .0
            .call("since", &args)
            .map_err(|e| ShopError::unavailable(format!("orders unavailable: {}", e)))?;
        answer(Format::Msgpack, ok, &body)
    }
}

impl Orders for HttpOrders {
    fn since(&mut self, after_id: i64, limit: i64) -> Result<Vec<Order>, ShopError> {
        let args = Format::Json.encode(&(after_id, limit));
        let (ok, body) = self
            .0
            .call("since", &args)
            .map_err(|e| ShopError::unavailable(format!("orders unavailable: {}", e)))?;
        answer(Format::Json, ok, &body)
    }
}

fn answer<T: DeserializeOwned>(format: Format, ok: bool, body: &[u8]) -> Result<T, ShopError> {
    if ok {
        return decode(format, body);
    }
    let err: ErrorBody = decode(format, body)?;
    Err(ShopError {
        code: err.error,
        detail: err.detail,
    })
}

/// A wrong shape is msgspec's ValidationError (`invalid_request` once it reaches the
/// Dispatcher); bytes that do not parse are a DecodeError (`shop_error`).
fn decode<T: DeserializeOwned>(format: Format, body: &[u8]) -> Result<T, ShopError> {
    match format {
        Format::Msgpack => rmp_serde::from_slice(body).map_err(|e| {
            use rmp_serde::decode::Error as E;
            let code = match e {
                E::Syntax(_) | E::LengthMismatch(_) | E::OutOfRange => "invalid_request",
                _ => "shop_error",
            };
            ShopError::new(code, format!("orders answered undecodable msgpack: {}", e))
        }),
        Format::Json => serde_json::from_slice(body).map_err(|e| {
            let code = if e.is_data() {
                "invalid_request"
            } else {
                "shop_error"
            };
            ShopError::new(code, format!("orders answered undecodable JSON: {}", e))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_orders_ignoring_other_fields() {
        let json = br#"[{"id":3,"customer_id":1,"idempotency_key":"k","lines":[{"product_id":5,"qty":1,"unit_price_cents":10},{"product_id":7,"qty":2,"unit_price_cents":1}],"total_cents":12,"created_at":1.5}]"#;
        let orders: Vec<Order> = answer(Format::Json, true, json).unwrap();
        assert_eq!(orders[0].id, 3);
        assert_eq!(
            orders[0]
                .lines
                .iter()
                .map(|l| l.product_id)
                .collect::<Vec<_>>(),
            vec![5, 7]
        );
        let err = answer::<Vec<Order>>(
            Format::Msgpack,
            false,
            &Format::Msgpack.encode(&ErrorBody {
                error: "not_found".into(),
                detail: "x".into(),
            }),
        )
        .unwrap_err();
        assert_eq!(err, ShopError::new("not_found", "x"));
    }
}
