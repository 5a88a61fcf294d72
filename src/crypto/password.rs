//! argon2id password hashing at OWASP's parameters (19 MiB, 2 passes, 1 lane), run off the async
//! runtime on a bounded number of threads so a burst of logins cannot starve verify traffic.

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::rngs::OsRng;
use secrecy::{ExposeSecret, SecretString};
use std::sync::{Arc, OnceLock};
use tokio::sync::Semaphore;

pub const MEMORY_KIB: u32 = 19 * 1024;
pub const PASSES: u32 = 2;
pub const LANES: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed")]
    Hashing,
    /// Every hashing thread is busy and the queue in front of them is full.
    #[error("password checks are at capacity")]
    Busy,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Checked {
    Match { needs_rehash: bool },
    NoMatch,
}

fn params() -> Params {
    Params::new(MEMORY_KIB, PASSES, LANES, None).unwrap_or_default()
}

fn argon2() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params())
}

fn hash_now(password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| PasswordError::Hashing)
}

/// A hash of a random password, checked against when there is no real hash, so that an
/// unknown email takes as long as a wrong password.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_now("keyward dummy password for timing").unwrap_or_default())
}

fn check_now(password: &str, stored: Option<&str>) -> Checked {
    let real = stored.is_some();
    let stored = stored.unwrap_or_else(|| dummy_hash());
    let Ok(parsed) = PasswordHash::new(stored) else {
        return Checked::NoMatch;
    };
    let matched = argon2().verify_password(password.as_bytes(), &parsed).is_ok();
    if !(matched && real) {
        return Checked::NoMatch;
    }
    let current = parsed.algorithm.as_str() == "argon2id"
        && Params::try_from(&parsed)
            .is_ok_and(|p| p.m_cost() == MEMORY_KIB && p.t_cost() == PASSES && p.p_cost() == LANES);
    Checked::Match { needs_rehash: !current }
}

/// How many password checks may wait for a hashing thread, per thread, before more are refused.
pub const QUEUED_PER_THREAD: usize = 4;

#[derive(Clone, Debug)]
pub struct Passwords {
    /// One per hashing thread.
    permits: Arc<Semaphore>,
    /// One per check running or waiting: when none is left, a check is refused at once
    /// (`Busy`) instead of queueing without bound.
    admitted: Arc<Semaphore>,
}

impl Default for Passwords {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self::new(cores.max(1))
    }
}

impl Passwords {
    pub fn new(concurrency: usize) -> Self {
        Self::with_queue(concurrency, concurrency * QUEUED_PER_THREAD)
    }

    /// `concurrency` hashing threads and at most `queued` checks waiting for one.
    pub fn with_queue(concurrency: usize, queued: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrency)),
            admitted: Arc::new(Semaphore::new(concurrency + queued)),
        }
    }

    pub async fn hash(&self, password: &SecretString) -> Result<String, PasswordError> {
        let password = password.clone();
        self.run(move || hash_now(password.expose_secret())).await?
    }

    /// Checks `password` against `stored`; with no stored hash it still does the same work.
    pub async fn check(&self, password: &SecretString, stored: Option<String>) -> Result<Checked, PasswordError> {
        let password = password.clone();
        self.run(move || check_now(password.expose_secret(), stored.as_deref()))
            .await
    }

    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, PasswordError> {
        let _admitted = self.admitted.try_acquire().map_err(|_| PasswordError::Busy)?;
        let _permit = self.permits.acquire().await.map_err(|_| PasswordError::Hashing)?;
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || span.in_scope(work))
            .await
            .map_err(|_| PasswordError::Hashing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_check_beyond_the_queue_is_refused_at_once() {
        let passwords = Passwords::with_queue(1, 1);
        let held = passwords.admitted.clone().try_acquire_many_owned(2).unwrap();
        let refused = passwords
            .check(&SecretString::from("whatever it is".to_owned()), None)
            .await;
        assert!(matches!(refused, Err(PasswordError::Busy)));
        drop(held);
        assert!(passwords
            .check(&SecretString::from("whatever it is".to_owned()), None)
            .await
            .is_ok());
    }

    #[test]
    fn hash_is_argon2id_phc_with_owasp_parameters() {
        let hash = hash_now("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert_eq!(
            check_now("correct horse battery", Some(&hash)),
            Checked::Match { needs_rehash: false }
        );
        assert_eq!(check_now("wrong horse battery", Some(&hash)), Checked::NoMatch);
    }

    #[test]
    fn weaker_parameters_ask_for_a_rehash() {
        let weak = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8 * 1024, 1, 1, None).unwrap(),
        );
        let salt = SaltString::generate(&mut OsRng);
        let hash = weak.hash_password(b"correct horse battery", &salt).unwrap().to_string();
        assert_eq!(
            check_now("correct horse battery", Some(&hash)),
            Checked::Match { needs_rehash: true }
        );
    }

    #[test]
    fn no_stored_hash_never_matches() {
        assert_eq!(check_now("keyward dummy password for timing", None), Checked::NoMatch);
    }
}
