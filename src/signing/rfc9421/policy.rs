//! What keyward insists an RFC 9421 signature covers, beyond what the RFC itself requires.

use super::super::error::SchemeError;
use super::super::request::Request;
use super::input::SignatureInput;

/// What keyward insists a signature covers. RFC examples that cover less are checked with
/// [`Requirements::none`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Requirements {
    /// `@method`, `@authority` and `@path` (or `@target-uri`).
    pub core_components: bool,
    /// A `created` parameter.
    pub created: bool,
    /// `content-digest` covered whenever the body is not empty.
    pub content_digest: bool,
    /// The whole query covered (`@query`, `@request-target` or `@target-uri`) whenever there is
    /// one: with `@path` alone a query could be changed unnoticed. Stricter than keyward's
    /// signed-request requirements ask.
    pub query: bool,
}

impl Default for Requirements {
    fn default() -> Self {
        Requirements {
            core_components: true,
            created: true,
            content_digest: true,
            query: true,
        }
    }
}

impl Requirements {
    pub fn none() -> Self {
        Requirements {
            core_components: false,
            created: false,
            content_digest: false,
            query: false,
        }
    }
}

/// Refuses `input` when it leaves out something `requirements` asks to be covered in `req`.
pub(super) fn check(input: &SignatureInput, req: &Request, requirements: &Requirements) -> Result<(), SchemeError> {
    if requirements.core_components {
        for required in ["@method", "@authority"] {
            if !input.covers(required) {
                return Err(SchemeError::UnsignedHeaderRequired(required));
            }
        }
        if !input.covers("@path") && !input.covers("@target-uri") {
            return Err(SchemeError::UnsignedHeaderRequired("@path"));
        }
    }
    if requirements.created && input.created().is_none() {
        return Err(SchemeError::UnsignedHeaderRequired("created"));
    }
    let query_covered = ["@query", "@request-target", "@target-uri"]
        .iter()
        .any(|name| input.covers(name));
    if requirements.query && !req.query.is_empty() && !query_covered {
        return Err(SchemeError::UnsignedHeaderRequired("@query"));
    }
    if requirements.content_digest && !req.body.is_empty() && !input.covers("content-digest") {
        return Err(SchemeError::UnsignedHeaderRequired("content-digest"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::super::tests::signed;
    use super::*;

    #[test]
    fn keyward_requires_method_authority_and_path() {
        let req = signed(r#"sig1=("@authority" "@path");created=1;keyid="k""#);
        assert_eq!(parse(&req), Err(SchemeError::UnsignedHeaderRequired("@method")));
        let req = signed(r#"sig1=("@method" "@authority");created=1;keyid="k""#);
        assert_eq!(parse(&req), Err(SchemeError::UnsignedHeaderRequired("@path")));
        let req = signed(r#"sig1=("@method" "@authority" "@target-uri");created=1;keyid="k""#);
        assert!(parse(&req).is_ok());
    }

    #[test]
    fn keyward_requires_created() {
        let req = signed(r#"sig1=("@method" "@authority" "@path");keyid="k""#);
        assert_eq!(parse(&req), Err(SchemeError::UnsignedHeaderRequired("created")));
    }

    #[test]
    fn keyward_requires_the_query_covered_when_there_is_one() {
        let mut req = signed(r#"sig1=("@method" "@authority" "@path");created=1;keyid="k""#);
        req.query = "a=1".to_owned();
        assert_eq!(parse(&req), Err(SchemeError::UnsignedHeaderRequired("@query")));
        req.set_header(
            "Signature-Input",
            r#"sig1=("@method" "@authority" "@path" "@query");created=1;keyid="k""#,
        );
        assert!(parse(&req).is_ok());
        req.set_header(
            "Signature-Input",
            r#"sig1=("@method" "@authority" "@target-uri");created=1;keyid="k""#,
        );
        assert!(parse(&req).is_ok());
    }

    #[test]
    fn keyward_requires_content_digest_when_there_is_a_body() {
        let req = signed(r#"sig1=("@method" "@authority" "@path");created=1;keyid="k""#)
            .with_body(crate::signing::Body::Bytes(b"x".to_vec()));
        assert_eq!(parse(&req), Err(SchemeError::UnsignedHeaderRequired("content-digest")));
    }
}
