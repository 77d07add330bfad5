//! The account's auth token, kept out of logs.

use std::fmt;

/// The provider auth token: the HMAC key for webhook signatures and the password for the REST API.
///
/// It is its own type so that it cannot be printed by accident: `Debug` shows `***`, there is no
/// `Display`, and the bytes are only reachable through [`AuthToken::expose`], which is easy to grep for.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthToken(String);

impl AuthToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token itself, for the HMAC key and the basic-auth password. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for AuthToken {
    fn from(token: String) -> Self {
        Self(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_token() {
        let token = AuthToken::new("s3cr3t-value");
        assert_eq!(format!("{token:?}"), "***");
        assert!(!format!("{:?}", Some(&token)).contains("s3cr3t"));
        assert_eq!(token.expose(), "s3cr3t-value");
    }
}
