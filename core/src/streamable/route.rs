//! What an HTTP request to the MCP endpoint asks for, decided from its method, a few headers
//! and its body, before any session is looked up.

use super::{Status, EVENT_STREAM, JSON};
use crate::{ErrorObject, Message};

/// The HTTP method, as far as the transport cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Sends messages.
    Post,
    /// Opens (or resumes) a stream.
    Get,
    /// Ends a session.
    Delete,
    /// Anything else: refused with 405.
    Other,
}

/// The parts of a request's head the transport decides with. A header sent more than once is
/// given joined with `,`, as HTTP allows for list-valued headers.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    /// The method.
    pub method: Method,
    /// `Mcp-Session-Id`.
    pub session: Option<&'a str>,
    /// `Accept`.
    pub accept: Option<&'a str>,
    /// `Content-Type`.
    pub content_type: Option<&'a str>,
    /// `Last-Event-ID`.
    pub last_event_id: Option<&'a str>,
}

/// The messages of a POST, and how its answers are to be sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Post {
    /// The messages, in order (a batch's elements, or the one message).
    pub messages: Vec<Message>,
    /// Whether they came as a batch, which a JSON answer then is too.
    pub batch: bool,
    /// Whether answers go in an event stream (the client listed `text/event-stream`) rather
    /// than one JSON body.
    pub sse: bool,
}

/// What a request asks of an existing session.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionRequest {
    /// Messages for the program.
    Post(Post),
    /// The stream for messages outside any request, or the resumption of a stream after the
    /// event id given.
    Get {
        /// `Last-Event-ID`, if sent.
        last_event_id: Option<String>,
    },
    /// The end of the session.
    Delete,
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    /// A new session (the POST carries an `initialize` request and names no session): the
    /// adapter creates one under a fresh random id, then hands it the POST.
    Start(Post),
    /// The session named; the adapter answers [`Status::unknown_session`] if it has none
    /// by that id.
    Session {
        /// The session id.
        id: String,
        /// What is asked of it.
        request: SessionRequest,
    },
    /// Refused as it stands.
    Refuse(Status),
}

/// Routes a request to the MCP endpoint. `body` is the whole request body (empty for `GET`
/// and `DELETE`); the adapter refuses one over its limit with [`Status::too_large`] before
/// calling this.
///
/// Refusals: 405 for another method, 415 for a POST body not declared JSON, 406 for a POST
/// that accepts neither JSON nor an event stream or a GET that does not accept an event
/// stream, 400 with a `-32700` parse error for a body
/// that is no JSON-RPC message, 400 for a request other than the first without a session id.
pub fn route(head: &Head<'_>, body: &[u8]) -> Route {
    let session = head.session.map(str::trim).filter(|s| !s.is_empty());
    let request = match head.method {
        Method::Other => return Route::Refuse(Status::empty(405)),
        Method::Delete => SessionRequest::Delete,
        Method::Get
            if !head
                .accept
                .is_none_or(|a| lists(a, &[EVENT_STREAM, "text/*", "*/*"])) =>
        {
            return Route::Refuse(Status::error(
                406,
                super::SERVER_ERROR,
                "a GET must accept text/event-stream",
            ))
        }
        Method::Get => SessionRequest::Get {
            last_event_id: head
                .last_event_id
                .map(|id| id.trim().to_owned())
                .filter(|id| !id.is_empty()),
        },
        Method::Post => match post(head, body) {
            Ok(post) => {
                if session.is_none() && post.messages.iter().any(is_initialize) {
                    return Route::Start(post);
                }
                SessionRequest::Post(post)
            }
            Err(status) => return Route::Refuse(status),
        },
    };
    match session {
        Some(id) => Route::Session {
            id: id.to_owned(),
            request,
        },
        None => Route::Refuse(Status::error(
            400,
            super::SERVER_ERROR,
            "Mcp-Session-Id is required (only an initialize request may start a session)",
        )),
    }
}

/// A POST's messages and answer mode, or why it is refused.
pub(crate) fn post(head: &Head<'_>, body: &[u8]) -> Result<Post, Status> {
    if !head.content_type.is_some_and(|t| lists(t, &[JSON])) {
        return Err(Status::error(
            415,
            super::SERVER_ERROR,
            "the body must be application/json",
        ));
    }
    let sse = head.accept.is_some_and(|a| lists(a, &[EVENT_STREAM]));
    let json = head
        .accept
        .is_none_or(|a| lists(a, &[JSON, "application/*", "*/*"]));
    if !sse && !json {
        return Err(Status::error(
            406,
            super::SERVER_ERROR,
            "the client must accept application/json or text/event-stream",
        ));
    }
    let message: Message = serde_json::from_slice(body).map_err(|err| {
        Status::error(
            400,
            ErrorObject::PARSE_ERROR,
            &format!("not a JSON-RPC message: {err}"),
        )
    })?;
    let (messages, batch) = match message {
        Message::Batch(messages) => (messages, true),
        message => (vec![message], false),
    };
    Ok(Post {
        messages,
        batch,
        sse,
    })
}

/// Whether a header's comma-separated media types include one of `types` (parameters such
/// as `;q=0.9` and case ignored).
fn lists(header: &str, types: &[&str]) -> bool {
    header.split(',').any(|item| {
        let media = item.split(';').next().unwrap_or_default().trim();
        types.iter().any(|t| media.eq_ignore_ascii_case(t))
    })
}

fn is_initialize(message: &Message) -> bool {
    matches!(message, Message::Request(r) if r.method == "initialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(method: Method) -> Head<'static> {
        Head {
            method,
            session: None,
            accept: Some("application/json, text/event-stream"),
            content_type: Some("application/json"),
            last_event_id: None,
        }
    }

    const INIT: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#;
    const LIST: &[u8] = br#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;

    fn refused(route: Route) -> u16 {
        match route {
            Route::Refuse(status) => status.code,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn an_initialize_without_a_session_starts_one() {
        let Route::Start(post) = route(&head(Method::Post), INIT) else {
            panic!("no start")
        };
        assert!(post.sse && !post.batch);
        assert_eq!(post.messages.len(), 1);
    }

    #[test]
    fn anything_else_without_a_session_is_400() {
        assert_eq!(refused(route(&head(Method::Post), LIST)), 400);
        assert_eq!(refused(route(&head(Method::Get), b"")), 400);
        assert_eq!(refused(route(&head(Method::Delete), b"")), 400);
    }

    #[test]
    fn a_session_routes_every_method() {
        let mut h = head(Method::Post);
        h.session = Some(" abc ");
        let Route::Session { id, request } = route(&h, LIST) else {
            panic!("not routed")
        };
        assert_eq!(id, "abc");
        assert!(matches!(request, SessionRequest::Post(_)));
        h.method = Method::Get;
        h.last_event_id = Some("3-7");
        assert_eq!(
            route(&h, b""),
            Route::Session {
                id: "abc".into(),
                request: SessionRequest::Get {
                    last_event_id: Some("3-7".into())
                }
            }
        );
    }

    #[test]
    fn bad_posts_are_refused_with_their_status() {
        let mut h = head(Method::Post);
        h.content_type = Some("text/plain");
        assert_eq!(refused(route(&h, INIT)), 415);
        let mut h = head(Method::Post);
        h.accept = Some("text/html");
        assert_eq!(refused(route(&h, INIT)), 406);
        let Route::Refuse(status) = route(&head(Method::Post), b"{not json") else {
            panic!("accepted")
        };
        assert_eq!(status.code, 400);
        let body: serde_json::Value = serde_json::from_slice(&status.body.unwrap()).unwrap();
        assert_eq!(body["error"]["code"], -32700);
        assert_eq!(body["id"], serde_json::Value::Null);
        assert_eq!(refused(route(&head(Method::Other), b"")), 405);
        let mut h = head(Method::Get);
        h.session = Some("abc");
        h.accept = Some("application/json");
        assert_eq!(refused(route(&h, b"")), 406);
        h.accept = None;
        assert!(matches!(route(&h, b""), Route::Session { .. }));
    }

    #[test]
    fn the_answer_mode_follows_accept() {
        let mut h = head(Method::Post);
        h.accept = Some("application/json;q=1");
        let Route::Start(post) = route(&h, INIT) else {
            panic!()
        };
        assert!(!post.sse);
        h.accept = None;
        let Route::Start(post) = route(&h, INIT) else {
            panic!()
        };
        assert!(!post.sse);
        h.accept = Some("TEXT/EVENT-STREAM");
        let Route::Start(post) = route(&h, INIT) else {
            panic!()
        };
        assert!(post.sse);
        h.content_type = Some("application/json; charset=utf-8");
        assert!(matches!(route(&h, INIT), Route::Start(_)));
    }

    #[test]
    fn a_batch_is_kept_as_one() {
        let body =
            br#"[{"jsonrpc":"2.0","id":1,"method":"initialize"},{"jsonrpc":"2.0","method":"x"}]"#;
        let Route::Start(post) = route(&head(Method::Post), body) else {
            panic!()
        };
        assert!(post.batch);
        assert_eq!(post.messages.len(), 2);
    }
}
