//! What can go wrong when reading or checking a signature, each mapped to one [`Refusal`], the
//! answer code of the verify endpoint. Details are fixed strings: nothing the client sent is
//! echoed into a message or a log.

/// A signature that cannot even be read, or that leaves out something keyward requires to be
/// signed. Decided without the secret, so without a database lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SchemeError {
    #[error("malformed signature: {0}")]
    Malformed(&'static str),
    #[error("the signature must cover {0}")]
    UnsignedHeaderRequired(&'static str),
}

/// Why a signature was refused, as the verify endpoint answers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Malformed,
    SignatureMismatch,
    SignatureExpired,
    UnsignedHeaderRequired,
}

impl SchemeError {
    pub fn refusal(&self) -> Refusal {
        match self {
            SchemeError::Malformed(_) => Refusal::Malformed,
            SchemeError::UnsignedHeaderRequired(_) => Refusal::UnsignedHeaderRequired,
        }
    }
}

/// Why a readable signature was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The signature is not the one the secret gives for this request: wrong secret, or
    /// something signed was changed on the way (a covered header removed counts too).
    #[error("the signature does not match the request")]
    Mismatch,
    /// The signing time (or a presigned URL's validity) is outside the accepted window.
    #[error("the signature is outside its validity window")]
    Expired,
    #[error("the signature must cover {0}")]
    UnsignedHeaderRequired(&'static str),
    #[error("malformed signature: {0}")]
    Malformed(&'static str),
    /// A SigV4 credential scope names a region or service this deployment does not accept.
    #[error("the credential scope names a {0} this deployment does not accept")]
    ScopeNotAccepted(&'static str),
}

impl VerifyError {
    /// The answer of the verify endpoint.
    pub fn refusal(&self) -> Refusal {
        match self {
            VerifyError::Mismatch => Refusal::SignatureMismatch,
            VerifyError::Expired => Refusal::SignatureExpired,
            VerifyError::UnsignedHeaderRequired(_) => Refusal::UnsignedHeaderRequired,
            // A client pointed at the wrong region gets told so, rather than hunting a
            // canonicalisation bug behind SIGNATURE_MISMATCH.
            VerifyError::Malformed(_) | VerifyError::ScopeNotAccepted(_) => Refusal::Malformed,
        }
    }
}

impl From<SchemeError> for VerifyError {
    fn from(err: SchemeError) -> Self {
        match err {
            SchemeError::Malformed(why) => VerifyError::Malformed(why),
            SchemeError::UnsignedHeaderRequired(what) => VerifyError::UnsignedHeaderRequired(what),
        }
    }
}

/// Our reference signers refuse requests they cannot sign properly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("the request has no Host header")]
    MissingHost,
    #[error("cannot sign: {0}")]
    Invalid(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_verify_error_maps_to_one_refusal() {
        assert_eq!(VerifyError::Mismatch.refusal(), Refusal::SignatureMismatch);
        assert_eq!(VerifyError::Expired.refusal(), Refusal::SignatureExpired);
        assert_eq!(
            VerifyError::UnsignedHeaderRequired("host").refusal(),
            Refusal::UnsignedHeaderRequired
        );
        assert_eq!(VerifyError::Malformed("x").refusal(), Refusal::Malformed);
        assert_eq!(VerifyError::ScopeNotAccepted("region").refusal(), Refusal::Malformed);
    }

    #[test]
    fn scheme_errors_keep_their_refusal_when_converted() {
        let err = SchemeError::UnsignedHeaderRequired("host");
        assert_eq!(VerifyError::from(err).refusal(), err.refusal());
        let err = SchemeError::Malformed("x");
        assert_eq!(VerifyError::from(err).refusal(), err.refusal());
    }
}
