//! IMDSv2 session tokens: random, bound to the instance that asked for
//! one, valid for the TTL it asked for (1 s to 6 h). Kept in memory: a
//! restarted daemon forgets them, and instances ask again (as SDKs do on
//! a 401).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ssh_key::rand_core::{OsRng, RngCore};

/// EC2's longest token lifetime, in seconds.
pub const MAX_TTL_SECS: u64 = 21_600;

/// Random bytes in a token: guessing one is hopeless.
const TOKEN_BYTES: usize = 32;

/// Live tokens one instance may hold: a guest asking for tokens in a loop
/// evicts only its own oldest, and the daemon's memory stays bounded
/// (the guest is hostile; SDKs hold one token at a time).
pub const MAX_PER_INSTANCE: usize = 256;

/// Tokens in force, by token.
#[derive(Debug, Default)]
pub struct Tokens {
    live: HashMap<String, (String, Instant)>,
}

/// Why a token was not issued.
#[derive(Debug, thiserror::Error)]
#[error("cannot make a metadata token from the OS's random source: {0}")]
pub struct RandomError(String);

impl Tokens {
    /// A new token for `instance`, valid `ttl` from `now`.
    pub fn issue(
        &mut self,
        instance: &str,
        ttl: Duration,
        now: Instant,
    ) -> Result<String, RandomError> {
        self.live.retain(|_, (_, expires)| *expires > now);
        let mut own: Vec<(Instant, String)> = self
            .live
            .iter()
            .filter(|(_, (owner, _))| owner == instance)
            .map(|(token, (_, expires))| (*expires, token.clone()))
            .collect();
        if own.len() >= MAX_PER_INSTANCE {
            own.sort();
            let surplus = own.len() + 1 - MAX_PER_INSTANCE;
            for (_, token) in own.into_iter().take(surplus) {
                self.live.remove(&token);
            }
        }
        let mut bytes = [0u8; TOKEN_BYTES];
        OsRng
            .try_fill_bytes(&mut bytes)
            .map_err(|e| RandomError(e.to_string()))?;
        let token = URL_SAFE_NO_PAD.encode(bytes);
        self.live
            .insert(token.clone(), (instance.to_owned(), now + ttl));
        Ok(token)
    }

    /// Whether `token` is in force at `now` and was issued to `instance`.
    pub fn valid(&self, token: &str, instance: &str, now: Instant) -> bool {
        self.live
            .get(token)
            .is_some_and(|(owner, expires)| owner == instance && *expires > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_serves_its_instance_until_it_expires() {
        let mut tokens = Tokens::default();
        let t0 = Instant::now();
        let token = tokens.issue("i-1", Duration::from_secs(10), t0).unwrap();
        assert!(tokens.valid(&token, "i-1", t0 + Duration::from_secs(9)));
        assert!(!tokens.valid(&token, "i-2", t0), "bound to its instance");
        assert!(!tokens.valid(&token, "i-1", t0 + Duration::from_secs(10)));
        assert!(!tokens.valid("forged", "i-1", t0));
        let other = tokens.issue("i-1", Duration::from_secs(1), t0).unwrap();
        assert_ne!(token, other);
        // Expired tokens are dropped when the next is issued.
        tokens
            .issue("i-3", Duration::from_secs(1), t0 + Duration::from_secs(60))
            .unwrap();
        assert_eq!(tokens.live.len(), 1);
    }

    #[test]
    fn an_instance_asking_in_a_loop_evicts_only_its_own_oldest_tokens() {
        let mut tokens = Tokens::default();
        let t0 = Instant::now();
        let ttl = |n: u64| Duration::from_secs(1000 + n);
        let neighbour = tokens.issue("i-2", ttl(0), t0).unwrap();
        let first = tokens.issue("i-1", ttl(0), t0).unwrap();
        let mut last = String::new();
        for n in 1..=(MAX_PER_INSTANCE as u64 * 4) {
            last = tokens.issue("i-1", ttl(n), t0).unwrap();
        }
        assert_eq!(tokens.live.len(), MAX_PER_INSTANCE + 1);
        assert!(!tokens.valid(&first, "i-1", t0), "the oldest went first");
        assert!(tokens.valid(&last, "i-1", t0));
        assert!(tokens.valid(&neighbour, "i-2", t0), "another's token stays");
    }
}
