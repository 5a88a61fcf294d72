//! When a signature is checked and how far from then its signing time may lie: the freshness
//! rules of every scheme in one place.

use chrono::{DateTime, Duration, Utc};

use super::error::VerifyError;

/// The caller's clock reading and the accepted skew (`signature_max_skew_seconds`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub now: DateTime<Utc>,
    pub max_skew: Duration,
}

impl Window {
    pub fn new(now: DateTime<Utc>, max_skew: Duration) -> Self {
        Window { now, max_skew }
    }

    /// Signed at `at`: accepted when `|now - at| <= max_skew`.
    pub(crate) fn check(&self, at: DateTime<Utc>) -> Result<(), VerifyError> {
        let diff = self.now.signed_duration_since(at);
        if diff <= self.max_skew && -diff <= self.max_skew {
            Ok(())
        } else {
            Err(VerifyError::Expired)
        }
    }

    /// A presigned URL signed at `at` and valid for `expires`: accepted from `max_skew` before
    /// `at` (the signer's clock may run ahead) until `at + expires`.
    pub(crate) fn check_presigned(&self, at: DateTime<Utc>, expires: Duration) -> Result<(), VerifyError> {
        let start = at.checked_sub_signed(self.max_skew);
        let end = at.checked_add_signed(expires);
        if start.is_some_and(|start| self.now >= start) && end.is_some_and(|end| self.now <= end) {
            Ok(())
        } else {
            Err(VerifyError::Expired)
        }
    }

    /// RFC 9421's `created` and `expires`, whole Unix seconds compared with whole seconds of
    /// `now`: `created` within `max_skew` either way, and `now` not past `expires`.
    pub(crate) fn check_created_expires(&self, created: Option<i64>, expires: Option<i64>) -> Result<(), VerifyError> {
        let now_secs = self.now.timestamp();
        let skew = self.max_skew.num_seconds();
        if let Some(created) = created {
            let age = now_secs.saturating_sub(created);
            if age > skew || age < -skew {
                return Err(VerifyError::Expired);
            }
        }
        if expires.is_some_and(|expires| now_secs > expires) {
            return Err(VerifyError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap_or_default()
    }

    #[test]
    fn skew_window_is_symmetric_and_inclusive() {
        let at = at(1_000);
        let skew = Duration::seconds(300);
        let admits = |now| Window::new(now, skew).check(at).is_ok();
        assert!(admits(at + skew));
        assert!(admits(at - skew));
        assert!(!admits(at + skew + Duration::seconds(1)));
        assert!(!admits(at - skew - Duration::seconds(1)));
    }

    #[test]
    fn a_presigned_url_lasts_from_skew_before_until_its_expiry() {
        let signed = at(1_000);
        let check = |now| Window::new(now, Duration::seconds(300)).check_presigned(signed, Duration::hours(1));
        assert_eq!(check(signed - Duration::seconds(300)), Ok(()));
        assert_eq!(check(signed + Duration::hours(1)), Ok(()));
        assert_eq!(check(signed - Duration::seconds(301)), Err(VerifyError::Expired));
        assert_eq!(
            check(signed + Duration::hours(1) + Duration::seconds(1)),
            Err(VerifyError::Expired)
        );
    }

    #[test]
    fn created_and_expires_are_compared_in_whole_seconds() {
        let skew = Duration::seconds(300);
        let late = Window::new(at(1_300) + Duration::milliseconds(900), skew);
        assert_eq!(late.check_created_expires(Some(1_000), None), Ok(()));
        assert_eq!(late.check_created_expires(Some(999), None), Err(VerifyError::Expired));
        assert_eq!(late.check_created_expires(None, Some(1_300)), Ok(()));
        assert_eq!(late.check_created_expires(None, Some(1_299)), Err(VerifyError::Expired));
        assert_eq!(
            Window::new(at(700), skew).check_created_expires(Some(1_001), None),
            Err(VerifyError::Expired)
        );
    }
}
