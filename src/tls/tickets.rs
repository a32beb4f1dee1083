//! TLS session tickets on the CP: how a DP that reconnects resumes its session instead of
//! paying for a full handshake (certificate chain, signatures, key exchange).
//!
//! A ticket is the CP's own session state, sealed with a key only CPs hold and kept by
//! the DP. Whoever holds the key can open a ticket, so tickets outlive a CP exactly as
//! long as its keys do: [`SessionTickets::Rotating`] keys live in one process (a restart
//! makes every DP do a full handshake), [`SessionTickets::Shared`] keys are derived from a
//! secret the user keeps, so a restarted CP, or another CP node behind the same address,
//! opens the tickets of the one before.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, NONCE_LEN};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use rustls::server::ProducesTickets;
use rustls_pki_types::UnixTime;

use super::TlsError;

/// How the control plane issues TLS session tickets, so that a data plane that reconnects
/// resumes its TLS session (no certificate chain to verify, no signatures) instead of
/// doing a full handshake.
///
/// A resumed session keeps the client certificate of the full handshake it came from:
/// the data plane's identity is the one verified then. Tickets are bound to the control
/// plane's certificate and its client authentication ([`ClientAuth`](super::ClientAuth)):
/// change either and every ticket is refused (a full handshake, verified afresh). A
/// resumed session whose client certificate has expired since is refused.
///
/// Kong's control plane (nginx with OpenSSL) issues tickets too, with keys in nginx's
/// shared memory, rotated every `ssl_session_timeout` (1 day by Kong's default) and lost
/// when nginx restarts; Kong's data planes never offer a ticket (they connect with
/// `sslhandshake(false, ...)`), so they gain nothing from either. This crate's
/// `DataPlane` keeps its session across reconnects.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum SessionTickets {
    /// Keys made at random by this process: rustls's ticketer, which makes a new key every
    /// 6 hours and opens tickets of the previous one, so a ticket is good for 6 to 12 hours.
    /// Old keys are erased. The default: reconnects to the same running control plane
    /// resume; after a restart every data plane does a full handshake.
    #[default]
    Rotating,
    /// Keys derived from a secret the user keeps (see [`TicketSecret`]): a restarted
    /// control plane, or every node of a cluster given the same secret, opens the tickets
    /// of the others, so a restart storm is paid in resumed handshakes.
    Shared(TicketSecret),
    /// No tickets and no session cache: every connection does a full handshake, as Kong's
    /// data planes always do.
    Off,
}

/// The secret that [`SessionTickets::Shared`] derives its ticket keys from; keep it across
/// restarts and give it to every control plane node behind one address.
///
/// Time is cut into periods of [`TicketSecret::rotation`] (default 12 hours, counted from
/// the Unix epoch so that every node agrees without talking): the key of a period seals
/// the tickets issued in it and is derived from the secret, the period's number, and a
/// digest of the control plane's certificate chain and client authentication. Tickets
/// sealed in one period are opened in it and the next (and the one before, for nodes whose
/// clocks differ), so a ticket is good for one to two periods (24 hours at most by
/// default, Kong's `ssl_session_timeout`).
///
/// **The secret is as sensitive as the cluster's private keys.** Whoever holds it can
/// forge a ticket naming any client certificate the control plane would accept, and so
/// connect as any data plane without its key; and can open every ticket, which holds the
/// session's resumption secret. TLS 1.3 sessions stay forward secret (a resumed
/// handshake still does an ECDHE key exchange, the only mode rustls offers); TLS 1.2
/// resumptions do not. Store it like `cluster_cert_key` (mode 600, never in a config
/// repository), and change it when a key would be changed: the next reconnect of each
/// data plane is then a full handshake. `Debug` never shows it.
#[derive(Clone)]
pub struct TicketSecret {
    prk: hkdf::Prk,
    rotation: Duration,
}

/// The default [`TicketSecret::rotation`]: 12 hours, so that a ticket lives up to 24
/// hours, Kong's `ssl_session_timeout`.
pub const DEFAULT_TICKET_ROTATION: Duration = Duration::from_secs(12 * 3600);

/// The shortest and longest rotation: TLS 1.3 tickets live at most 7 days (RFC 8446), and
/// ours live two rotations.
const MIN_ROTATION: Duration = Duration::from_secs(60);
const MAX_ROTATION: Duration = Duration::from_secs(7 * 24 * 3600 / 2);

/// The fewest bytes of secret accepted: 256 bits.
const MIN_SECRET: usize = 32;

impl TicketSecret {
    /// A secret from bytes: at least 32 of them, from a secure random source (for example
    /// `openssl rand 48 > ticket.key`). Longer secrets are fine: all of it is hashed.
    pub fn new(secret: &[u8]) -> Result<TicketSecret, TlsError> {
        if secret.len() < MIN_SECRET {
            return Err(TlsError::Config(format!(
                "a session ticket secret needs at least {MIN_SECRET} random bytes, got {}",
                secret.len()
            )));
        }
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"dpspec session tickets v1");
        Ok(TicketSecret {
            prk: salt.extract(secret),
            rotation: DEFAULT_TICKET_ROTATION,
        })
    }

    /// A secret read from a file, taken as raw bytes (a file written by
    /// `openssl rand 48 > ticket.key`); errors name the file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<TicketSecret, TlsError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| {
            TlsError::Config(format!(
                "session ticket secret {}: cannot read the file: {e}",
                path.display()
            ))
        })?;
        TicketSecret::new(&bytes).map_err(|e| match e {
            TlsError::Config(reason) => TlsError::Config(format!("{}: {reason}", path.display())),
            e => e,
        })
    }

    /// How often the sealing key changes. Default [`DEFAULT_TICKET_ROTATION`] (12 hours);
    /// kept between 1 minute and 3.5 days (TLS 1.3 tickets live at most 7 days). A longer
    /// period lets a control plane that restarts after a longer run still resume the
    /// sessions of data planes that connected early in it (a data plane's ticket is as old
    /// as its last handshake), and widens the window in which a stolen key is useful.
    pub fn rotation(mut self, every: Duration) -> TicketSecret {
        self.rotation = every.clamp(MIN_ROTATION, MAX_ROTATION);
        self
    }
}

impl fmt::Debug for TicketSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TicketSecret")
            .field("rotation", &self.rotation)
            .field("secret", &format_args!("<redacted>"))
            .finish()
    }
}

/// The ticketer of `tickets` for a server whose certificate and client authentication
/// digest to `binding`, or `None` for no tickets at all.
pub(crate) fn ticketer(
    tickets: &SessionTickets,
    binding: [u8; 32],
) -> Result<Option<Arc<dyn ProducesTickets>>, TlsError> {
    match tickets {
        SessionTickets::Rotating => rustls::crypto::ring::Ticketer::new()
            .map(Some)
            .map_err(|e| TlsError::Config(format!("session ticketer: {e}"))),
        SessionTickets::Shared(secret) => Ok(Some(Arc::new(SharedTicketer::new(secret, binding)))),
        SessionTickets::Off => Ok(None),
    }
}

/// A ticketer that issues nothing (rustls's own is private).
#[derive(Debug)]
pub(crate) struct NoTickets;

impl ProducesTickets for NoTickets {
    fn enabled(&self) -> bool {
        false
    }

    fn lifetime(&self) -> u32 {
        0
    }

    fn encrypt(&self, _plain: &[u8]) -> Option<Vec<u8>> {
        None
    }

    fn decrypt(&self, _cipher: &[u8]) -> Option<Vec<u8>> {
        None
    }
}

/// Length of the key name at the front of each ticket.
const NAME_LEN: usize = 16;
/// Length of the AEAD tag at its end.
const TAG_LEN: usize = 16;
static ALG: &aead::Algorithm = &aead::CHACHA20_POLY1305;

/// The ticketer of [`SessionTickets::Shared`]: ChaCha20-Poly1305 under a key derived per
/// period. A ticket is `key name (16) | nonce (12) | sealed session | tag (16)`, the key
/// name authenticated as associated data; the nonce is random (a period would need about
/// 2^32 tickets before a repeat became likely).
pub(crate) struct SharedTicketer {
    prk: hkdf::Prk,
    binding: [u8; 32],
    period_secs: u64,
    keys: RwLock<Keys>,
    rng: SystemRandom,
}

/// The keys of the period before the current one, the current one and the next.
struct Keys {
    current: u64,
    keys: [PeriodKey; 3],
}

struct PeriodKey {
    name: [u8; NAME_LEN],
    key: LessSafeKey,
}

/// An HKDF output length.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

impl SharedTicketer {
    pub(crate) fn new(secret: &TicketSecret, binding: [u8; 32]) -> SharedTicketer {
        let mut t = SharedTicketer {
            prk: secret.prk.clone(),
            binding,
            period_secs: secret.rotation.as_secs(),
            keys: RwLock::new(Keys {
                current: 0,
                keys: [0, 1, 2].map(|_| PeriodKey {
                    name: [0; NAME_LEN],
                    key: LessSafeKey::new(UnboundKey::new(ALG, &[0; 32]).expect("32-byte key")),
                }),
            }),
            rng: SystemRandom::new(),
        };
        let now = t.period_now();
        *t.keys.get_mut().unwrap_or_else(|e| e.into_inner()) = t.keys_for(now);
        t
    }

    fn period_now(&self) -> u64 {
        UnixTime::now().as_secs() / self.period_secs
    }

    fn key_of(&self, period: u64) -> PeriodKey {
        let p = period.to_be_bytes();
        let key_info = [b"dpspec ticket key".as_slice(), &self.binding, &p];
        let name_info = [b"dpspec ticket key name".as_slice(), &self.binding, &p];
        // Both lengths are far below HKDF's limit: expand cannot fail.
        let okm = self.prk.expand(&key_info, ALG).expect("HKDF length");
        let key = LessSafeKey::new(UnboundKey::from(okm));
        let mut name = [0u8; NAME_LEN];
        self.prk
            .expand(&name_info, Len(NAME_LEN))
            .and_then(|okm| okm.fill(&mut name))
            .expect("HKDF length");
        PeriodKey { name, key }
    }

    fn keys_for(&self, current: u64) -> Keys {
        Keys {
            current,
            keys: [
                self.key_of(current.saturating_sub(1)),
                self.key_of(current),
                self.key_of(current + 1),
            ],
        }
    }

    /// Runs `f` with the keys of the current period, deriving them when the period has
    /// changed.
    fn with_keys<T>(&self, f: impl FnOnce(&Keys) -> T) -> T {
        let now = self.period_now();
        {
            let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
            if keys.current == now {
                return f(&keys);
            }
        }
        let fresh = self.keys_for(now);
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        *keys = fresh;
        f(&keys)
    }
}

impl fmt::Debug for SharedTicketer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedTicketer")
            .field("period_secs", &self.period_secs)
            .finish_non_exhaustive()
    }
}

impl ProducesTickets for SharedTicketer {
    fn enabled(&self) -> bool {
        true
    }

    /// Two periods (the client's hint; the server opens a ticket for one to two), at
    /// most TLS 1.3's 7 days.
    fn lifetime(&self) -> u32 {
        (2 * self.period_secs).min(7 * 24 * 3600) as u32
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        self.with_keys(|keys| {
            let current = &keys.keys[1];
            let mut out = Vec::with_capacity(NAME_LEN + NONCE_LEN + plain.len() + TAG_LEN);
            out.extend_from_slice(&current.name);
            out.extend_from_slice(&nonce);
            out.extend_from_slice(plain);
            let tag = current
                .key
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(current.name),
                    &mut out[NAME_LEN + NONCE_LEN..],
                )
                .ok()?;
            out.extend_from_slice(tag.as_ref());
            Some(out)
        })
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        if ticket.len() < NAME_LEN + NONCE_LEN + TAG_LEN {
            return None;
        }
        let (name, rest) = ticket.split_at(NAME_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        self.with_keys(|keys| {
            let k = keys.keys.iter().find(|k| k.name == name)?;
            let mut buf = sealed.to_vec();
            let plain_len = k
                .key
                .open_in_place(nonce, Aad::from(k.name), &mut buf)
                .ok()?
                .len();
            buf.truncate(plain_len);
            Some(buf)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(byte: u8) -> TicketSecret {
        TicketSecret::new(&[byte; 32]).unwrap()
    }

    #[test]
    fn a_short_secret_is_refused() {
        let err = TicketSecret::new(&[7; 31]).unwrap_err();
        assert!(err.to_string().contains("at least 32"), "{err}");
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let s = format!("{:?}", secret(0x41));
        assert!(
            s.contains("redacted") && !s.contains("65") && !s.contains("41"),
            "{s}"
        );
    }

    #[test]
    fn rotation_is_kept_within_tls_bounds() {
        assert_eq!(secret(1).rotation, DEFAULT_TICKET_ROTATION);
        let short = secret(1).rotation(Duration::from_secs(1));
        assert_eq!(short.rotation, MIN_ROTATION);
        let long = secret(1).rotation(Duration::from_secs(30 * 24 * 3600));
        assert_eq!(long.rotation, MAX_ROTATION);
        assert_eq!(
            SharedTicketer::new(&long, [0; 32]).lifetime(),
            7 * 24 * 3600
        );
    }

    #[test]
    fn a_second_ticketer_with_the_same_secret_opens_the_tickets() {
        let a = SharedTicketer::new(&secret(1), [9; 32]);
        let b = SharedTicketer::new(&secret(1), [9; 32]);
        let ticket = a.encrypt(b"session state").unwrap();
        assert_eq!(b.decrypt(&ticket).as_deref(), Some(&b"session state"[..]));
        // Two tickets of the same state differ (random nonces).
        assert_ne!(a.encrypt(b"session state").unwrap(), ticket);
    }

    #[test]
    fn another_secret_or_binding_opens_nothing() {
        let a = SharedTicketer::new(&secret(1), [9; 32]);
        let ticket = a.encrypt(b"session state").unwrap();
        assert_eq!(
            SharedTicketer::new(&secret(2), [9; 32]).decrypt(&ticket),
            None
        );
        assert_eq!(
            SharedTicketer::new(&secret(1), [8; 32]).decrypt(&ticket),
            None
        );
    }

    #[test]
    fn a_tampered_or_short_ticket_opens_nothing() {
        let a = SharedTicketer::new(&secret(1), [9; 32]);
        let ticket = a.encrypt(b"session state").unwrap();
        for i in [0, NAME_LEN, NAME_LEN + NONCE_LEN, ticket.len() - 1] {
            let mut bad = ticket.clone();
            bad[i] ^= 1;
            assert_eq!(a.decrypt(&bad), None, "byte {i} flipped");
        }
        assert_eq!(
            a.decrypt(&ticket[..NAME_LEN + NONCE_LEN + TAG_LEN - 1]),
            None
        );
        assert_eq!(a.decrypt(b""), None);
    }

    #[test]
    fn tickets_of_the_neighbouring_periods_open_and_older_ones_do_not() {
        let t = SharedTicketer::new(&secret(1), [9; 32]);
        let now = t.period_now();
        let seal = |period: u64| {
            let k = t.key_of(period);
            let nonce = [3u8; NONCE_LEN];
            let mut buf = b"state".to_vec();
            let tag = k
                .key
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(k.name),
                    &mut buf,
                )
                .unwrap();
            [&k.name[..], &nonce, &buf, tag.as_ref()].concat()
        };
        for p in [now - 1, now, now + 1] {
            assert!(t.decrypt(&seal(p)).is_some(), "period {p} (now {now})");
        }
        for p in [now - 2, now + 2] {
            assert!(t.decrypt(&seal(p)).is_none(), "period {p} (now {now})");
        }
    }
}
