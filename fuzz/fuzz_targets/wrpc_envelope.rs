//! The wRPC envelope: protobuf decoding and the protocol rules, as the reader of every
//! connection runs them on each binary WebSocket message.
//!
//! Checks: no panic; `validate::decode` agrees with `decode_envelope` + `classify`; a
//! refusal's close reason fits a WebSocket close frame; a decoded envelope re-encodes to
//! bytes that decode to the same envelope and the same verdict.
#![no_main]

use dpspec::wrpc::envelope::{decode_envelope, encode_envelope, WebsocketPayload};
use dpspec::wrpc::validate::{classify, decode};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let both = decode(data);
    let Ok(msg) = decode_envelope(data) else {
        assert!(both.is_err());
        return;
    };
    let verdict = classify(&msg);
    match (&both, &verdict) {
        (Ok((m, k)), Ok(k2)) => {
            assert_eq!(m, &msg);
            assert_eq!(k, k2);
        }
        (Err(e), Err(e2)) => assert_eq!(e, e2),
        _ => panic!("decode and classify disagree: {both:?} vs {verdict:?}"),
    }
    if let Err(invalid) = &verdict {
        assert!(invalid.rule.close_reason().len() <= 123);
        let _ = invalid.to_string();
    }

    // Re-encoding: the generic prost encoding, and ours when the version is V1.
    let again = WebsocketPayload::decode(msg.encode_to_vec().as_slice()).expect("re-decode");
    assert_eq!(again, msg);
    if let (Some(p), 1) = (&msg.payload, msg.version) {
        let ours = encode_envelope(p);
        assert_eq!(ours, msg.encode_to_vec());
        let back = decode_envelope(&ours).expect("our encoding decodes");
        assert_eq!(back, msg);
        assert_eq!(classify(&back), verdict);
    }
});
