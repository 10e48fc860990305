//! Usernames and password rules shared by every way of creating or changing an account.

use unicode_normalization::UnicodeNormalization;

/// Normalizes a username for storage and comparison: NFKC, Unicode case folding, NFKC again
/// (the NFKC_Casefold idea), with surrounding white space removed.
pub fn normalize(raw: &str) -> String {
    let folded = caseless::default_case_fold_str(&raw.trim().nfkc().collect::<String>());
    folded.nfkc().collect()
}

/// Why a username or new password is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// Empty, too long, or containing control characters.
    #[error("username must be 1 to 64 characters without control characters")]
    Username,
    /// Shorter than 8 or longer than 128 characters.
    #[error("password must be 8 to 128 characters")]
    PasswordLength,
}

/// Checks a normalized username.
pub fn check_username(normalized: &str) -> Result<(), CredentialError> {
    let n = normalized.chars().count();
    if n == 0 || n > 64 || normalized.chars().any(char::is_control) {
        return Err(CredentialError::Username);
    }
    Ok(())
}

/// Checks a new password: 8 to 128 characters.
pub fn check_new_password(password: &str) -> Result<(), CredentialError> {
    let n = password.chars().count();
    if !(8..=128).contains(&n) {
        return Err(CredentialError::PasswordLength);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_folds_case_and_compatibility_forms() {
        assert_eq!(normalize("Alice"), "alice");
        assert_eq!(normalize("ＡＬＩＣＥ"), "alice");
        assert_eq!(normalize("Straße"), normalize("STRASSE"));
        assert_eq!(normalize("  bob "), "bob");
    }

    #[test]
    fn password_length_rules() {
        assert!(check_new_password("1234567").is_err());
        assert!(check_new_password("12345678").is_ok());
        assert!(check_new_password(&"x".repeat(128)).is_ok());
        assert!(check_new_password(&"x".repeat(129)).is_err());
    }

    #[test]
    fn username_rules() {
        assert!(check_username("").is_err());
        assert!(check_username("a\u{7}").is_err());
        assert!(check_username("alice").is_ok());
    }
}
