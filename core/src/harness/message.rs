//! The `message` target: the message model's decoding and encoding.

use crate::{decode, Lite, MalformedKind, Message, EXCERPT_LEN};

/// The message model: every accepted frame survives encode → decode unchanged, with and
/// without the version member ([`Lite`]); every rejected frame is a decoding
/// [`Malformed`](crate::Malformed)
/// with a bounded excerpt. The whole input is one frame.
pub fn message(data: &[u8]) {
    let decoded = decode::<Message>(data);
    let lite = decode::<Lite<Message>>(data);
    match decoded {
        Ok(message) => {
            assert_eq!(lite, Ok(Lite(message.clone())), "Lite decodes differently");
            let encoded = serde_json::to_vec(&message).expect("a decoded message encodes");
            // Line framing writes each message on one line.
            assert!(!encoded.contains(&b'\n'), "an encoding spans lines");
            assert_eq!(
                decode::<Message>(&encoded),
                Ok(message.clone()),
                "encode then decode changed the message"
            );
            let lite_encoded =
                serde_json::to_vec(&Lite(message.clone())).expect("a decoded message encodes");
            assert!(!lite_encoded.contains(&b'\n'), "an encoding spans lines");
            assert_eq!(
                decode::<Message>(&lite_encoded),
                Ok(message),
                "encode without the version, then decode, changed the message"
            );
        }
        Err(malformed) => {
            assert_eq!(
                lite.err().as_ref(),
                Some(&malformed),
                "Lite decodes differently"
            );
            assert!(
                matches!(
                    malformed.kind,
                    MalformedKind::InvalidUtf8 { .. }
                        | MalformedKind::InvalidJson { .. }
                        | MalformedKind::NotJsonRpc { .. }
                ),
                "decoding reported a framing failure: {malformed}"
            );
            assert!(malformed.excerpt.chars().count() <= EXCERPT_LEN);
        }
    }
}
