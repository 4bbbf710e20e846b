//! SELinux security contexts `user:role:type:range`, where the range may
//! itself contain colons (`s0:c1,c2`, `s0-s0:c0.c1023`).

/// A parsed context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// `system_u`.
    pub user: String,
    /// `system_r` / `object_r`.
    pub role: String,
    /// `svirt_t`, `svirt_image_t`...
    pub kind: String,
    /// `s0:c1,c2`; may be empty (non-MLS policy).
    pub range: String,
}

impl Context {
    /// Parses `user:role:type[:range]`.
    pub fn parse(text: &str) -> Option<Context> {
        let mut it = text.trim().splitn(4, ':');
        let (user, role, kind) = (it.next()?, it.next()?, it.next()?);
        if user.is_empty() || role.is_empty() || kind.is_empty() {
            return None;
        }
        Some(Context {
            user: user.into(),
            role: role.into(),
            kind: kind.into(),
            range: it.next().unwrap_or_default().into(),
        })
    }

    /// The same context with another range.
    pub fn with_range(&self, range: &str) -> Context {
        Context {
            range: range.into(),
            ..self.clone()
        }
    }

    /// The sensitivity part of the range (`s0` of `s0:c1,c2` or `s0-s0:...`).
    pub fn sensitivity(&self) -> &str {
        let low = self.range.split('-').next().unwrap_or_default();
        low.split(':').next().unwrap_or_default()
    }
}

impl std::fmt::Display for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.user, self.role, self.kind)?;
        if !self.range.is_empty() {
            write!(f, ":{}", self.range)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_with_colons_stay_whole() {
        let c = Context::parse("system_u:system_r:svirt_t:s0:c1,c2").unwrap();
        assert_eq!(c.kind, "svirt_t");
        assert_eq!(c.range, "s0:c1,c2");
        assert_eq!(c.sensitivity(), "s0");
        assert_eq!(c.to_string(), "system_u:system_r:svirt_t:s0:c1,c2");
        let r = Context::parse("u:r:t:s0-s0:c0.c1023").unwrap();
        assert_eq!(r.sensitivity(), "s0");
    }

    #[test]
    fn new_ranges_replace_old_ones() {
        let c = Context::parse("system_u:object_r:svirt_image_t:s0").unwrap();
        assert_eq!(
            c.with_range("s0:c5,c9").to_string(),
            "system_u:object_r:svirt_image_t:s0:c5,c9"
        );
        assert!(Context::parse("just:two").is_none());
    }
}
