//! AWS Signature Version 4: the `Authorization: AWS4-HMAC-SHA256 ...` header and presigned URLs,
//! canonicalised exactly as AWS specifies (the AWS test suite in ../shared/testdata is the referee).

mod canonical;
mod parse;
mod sign;
mod verify;

use chrono::{DateTime, Duration, Utc};

pub(super) use canonical::signing_key;
pub use parse::parse;
pub(crate) use parse::{has_presigned_query, is_sigv4_authorization};
pub use sign::{presign, sign, Credentials};
pub use verify::{verify, Accept};

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The payload hash of a request whose body is not signed (presigned URLs, some S3 uploads).
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
const TERMINATOR: &str = "aws4_request";
/// AWS refuses presigned URLs valid for longer than seven days; so do we.
pub const MAX_PRESIGN_EXPIRES_SECS: i64 = 604_800;

const P_ALGORITHM: &str = "X-Amz-Algorithm";
const P_CREDENTIAL: &str = "X-Amz-Credential";
const P_DATE: &str = "X-Amz-Date";
const P_EXPIRES: &str = "X-Amz-Expires";
const P_SIGNED_HEADERS: &str = "X-Amz-SignedHeaders";
const P_SIGNATURE: &str = "X-Amz-Signature";
const P_SECURITY_TOKEN: &str = "X-Amz-Security-Token";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// `Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`
    Header,
    /// `?X-Amz-Algorithm=...&X-Amz-Credential=...&X-Amz-Signature=...`
    Presigned,
}

/// `<date>/<region>/<service>/aws4_request`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialScope {
    /// `YYYYMMDD`
    pub date: String,
    pub region: String,
    pub service: String,
}

impl CredentialScope {
    pub fn to_scope_string(&self) -> String {
        format!("{}/{}/{}/{TERMINATOR}", self.date, self.region, self.service)
    }
}

/// A SigV4 signature read from a request, before any secret is involved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    form: Form,
    key_id: String,
    scope: CredentialScope,
    /// The request time exactly as it goes into the string to sign.
    amz_date: String,
    timestamp: DateTime<Utc>,
    expires: Option<Duration>,
    signed_headers: Vec<String>,
    signature: [u8; 32],
}

impl Parsed {
    pub fn form(&self) -> Form {
        self.form
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn scope(&self) -> &CredentialScope {
        &self.scope
    }

    /// When the client says it signed the request.
    pub fn timestamp(&self) -> DateTime<Utc> {
        self.timestamp
    }

    /// `X-Amz-Expires` of a presigned URL.
    pub fn expires(&self) -> Option<Duration> {
        self.expires
    }

    /// Lower-case names, in the order the client listed them.
    pub fn signed_headers(&self) -> &[String] {
        &self.signed_headers
    }

    pub fn signature(&self) -> &[u8; 32] {
        &self.signature
    }
}
