//! Reading a JSON request body: every failure becomes one of the service's stable error
//! codes, a parser message never carries a card-number-like run of digits, and the raw
//! body is wiped once parsed.
//!
//! Shared because the vault and the sandbox both take card numbers in JSON bodies and
//! had each written this themselves; the rules that keep card data out of answers and
//! memory belong in one place. (The gateway parses its JSON-RPC bodies itself: a bad
//! body is a JSON-RPC error object, not an HTTP error.)
//!
//! What a client sees stays the service's own: [`read_json_body`] builds the answer
//! through the service's error type ([`JsonBodyRejection`]), and each service keeps a
//! two-line `JsonBody<T>` extractor over it (a generic extractor here could not carry
//! the service's rejection type without changing every handler's pattern).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

/// The message of the `invalid_request` for a body that could not be read (the client
/// went away, say): what the stream said stays out of the answer.
pub const UNREADABLE_BODY: &str = "the request body could not be read";

/// How a service answers a JSON body it cannot use: the constructors of its error type
/// for the four ways reading one fails. The messages handed in have had digit runs
/// redacted already ([`Self::REDACT_DIGIT_RUNS_FROM`]).
pub trait JsonBodyRejection: Sized {
    /// Runs of this many digits or more (spaces and dashes between them included) are
    /// replaced by `[digits]` in parser messages
    /// ([`paysys_cardnum::redact_digit_runs`]).
    const REDACT_DIGIT_RUNS_FROM: usize;
    /// The body is larger than the router's `DefaultBodyLimit`.
    fn body_too_large() -> Self;
    /// Valid JSON of the wrong shape (wrong type, missing or unknown field), or a body
    /// that could not be read at all ([`UNREADABLE_BODY`]).
    fn invalid_request(message: String) -> Self;
    /// Not JSON: a syntax error or a truncated document.
    fn invalid_json(message: String) -> Self;
}

/// What an empty body (nothing but whitespace) means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmptyBody {
    /// It is not JSON: `invalid_json`.
    Refused,
    /// It reads as `{}`, for endpoints whose fields are all optional (the sandbox's
    /// capture and void).
    EmptyObject,
}

/// Read the whole body of `req` (within the router's body limit) and parse it as `T`;
/// a failure is answered with `R`'s codes. The body's bytes are zeroized afterwards
/// when this was their only owner: they may hold a card number or CVC.
pub async fn read_json_body<T, R, S>(req: Request, state: &S, empty: EmptyBody) -> Result<T, R>
where
    T: DeserializeOwned,
    R: JsonBodyRejection,
    S: Send + Sync,
{
    let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            R::body_too_large()
        } else {
            R::invalid_request(UNREADABLE_BODY.into())
        }
    })?;
    let text: &[u8] = match empty {
        EmptyBody::EmptyObject if bytes.iter().all(u8::is_ascii_whitespace) => b"{}",
        _ => &bytes,
    };
    let parsed = serde_json::from_slice(text).map_err(|e| {
        let message = paysys_cardnum::redact_digit_runs(&e.to_string(), R::REDACT_DIGIT_RUNS_FROM);
        match e.classify() {
            serde_json::error::Category::Data => R::invalid_request(message),
            _ => R::invalid_json(message),
        }
    });
    // The parsed copies of card data sit in zeroizing wrappers; the raw body does not.
    // A body that arrived in one frame can still share hyper's read buffer, which the
    // next read overwrites.
    if let Ok(mut unique) = bytes.try_into_mut() {
        zeroize::Zeroize::zeroize(&mut unique[..]);
    }
    parsed
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::body::{Body, HttpBody};
    use axum::response::{IntoResponse, Response};
    use axum::routing::post;
    use axum::Router;
    use serde::Deserialize;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tower::ServiceExt;

    /// A service's error type, answering with the code and the message.
    #[derive(Debug, PartialEq, Eq)]
    enum TestError {
        TooLarge,
        Request(String),
        Json(String),
    }

    impl JsonBodyRejection for TestError {
        const REDACT_DIGIT_RUNS_FROM: usize = 8;
        fn body_too_large() -> Self {
            TestError::TooLarge
        }
        fn invalid_request(message: String) -> Self {
            TestError::Request(message)
        }
        fn invalid_json(message: String) -> Self {
            TestError::Json(message)
        }
    }

    impl IntoResponse for TestError {
        fn into_response(self) -> Response {
            format!("{self:?}").into_response()
        }
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Payment {
        #[allow(dead_code)]
        amount: Option<u64>,
    }

    /// The two-line extractor a service writes over [`read_json_body`].
    struct ServiceJson<T>(T);

    impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ServiceJson<T> {
        type Rejection = TestError;
        async fn from_request(req: Request, state: &S) -> Result<Self, TestError> {
            read_json_body(req, state, EmptyBody::Refused).await.map(ServiceJson)
        }
    }

    /// The request through a router limited to 64 bytes; what the handler got.
    async fn answer(body: Body, empty: EmptyBody) -> String {
        let handler = move |req: Request| async move {
            match read_json_body::<Payment, TestError, ()>(req, &(), empty).await {
                Ok(payment) => format!("ok {payment:?}"),
                Err(e) => format!("{e:?}"),
            }
        };
        let app = Router::new().route("/", post(handler)).layer(axum::extract::DefaultBodyLimit::max(64));
        let response = app.oneshot(Request::post("/").body(body).unwrap()).await.unwrap();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    async fn answer_to(text: &'static str) -> String {
        answer(Body::from(text), EmptyBody::Refused).await
    }

    #[tokio::test]
    async fn a_well_formed_body_is_parsed() {
        assert_eq!(answer_to(r#"{"amount": 5}"#).await, "ok Payment { amount: Some(5) }");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_body_too_large() {
        assert_eq!(
            answer_to(r#"{"amount": 1, "padding": "................................................"}"#).await,
            "TooLarge"
        );
    }

    #[tokio::test]
    async fn json_of_the_wrong_shape_is_an_invalid_request() {
        assert!(answer_to(r#"{"amount": "five"}"#).await.starts_with("Request(\"invalid type: string"));
        assert!(answer_to(r#"{"amount": 5, "extra": 1}"#).await.starts_with("Request(\"unknown field `extra`"));
    }

    #[tokio::test]
    async fn text_that_is_not_json_is_invalid_json() {
        assert!(answer_to(r#"{"amount": 5"#).await.starts_with("Json(\"EOF while parsing"));
        assert!(answer_to("amount=5").await.starts_with("Json(\"expected value"));
    }

    #[tokio::test]
    async fn parser_messages_never_echo_a_card_number() {
        let answer = answer_to(r#"{"amount": "4242 4242 4242 4242"}"#).await;
        assert!(answer.starts_with("Request(\"invalid type: string \\\"[digits]\\\""), "{answer}");
        let answer = answer_to(r#"{"amount": 42424242424242424242}"#).await;
        assert!(!answer.contains("4242"), "{answer}");
        // Below the service's threshold the number stays: it is no card number.
        assert!(answer_to(r#"{"amount": "1234567"}"#).await.contains("1234567"));
    }

    #[tokio::test]
    async fn an_empty_body_is_refused_or_read_as_an_empty_object_as_the_service_chose() {
        assert!(answer(Body::empty(), EmptyBody::Refused).await.starts_with("Json(\"EOF while parsing"));
        assert_eq!(answer(Body::from(" \n"), EmptyBody::EmptyObject).await, "ok Payment { amount: None }");
        assert!(answer(Body::from("[]"), EmptyBody::EmptyObject).await.starts_with("Request("));
    }

    /// A body whose stream fails half-way, as when the client goes away.
    struct Broken;

    impl HttpBody for Broken {
        type Data = Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
            Poll::Ready(Some(Err(std::io::Error::other("connection reset"))))
        }
    }

    #[tokio::test]
    async fn a_body_that_cannot_be_read_is_an_invalid_request_without_detail() {
        assert_eq!(answer(Body::new(Broken), EmptyBody::Refused).await, format!("Request({UNREADABLE_BODY:?})"));
    }

    #[tokio::test]
    async fn the_service_extractor_answers_with_the_service_error() {
        let app = Router::new()
            .route("/", post(|ServiceJson(payment): ServiceJson<Payment>| async move { format!("{payment:?}") }));
        let response = app.oneshot(Request::post("/").body(Body::from("{")).unwrap()).await.unwrap();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        assert!(String::from_utf8(bytes.to_vec()).unwrap().starts_with("Json(\"EOF while parsing"));
    }
}
