//! The plaintext encoding of a [`StoredCredential`] inside an encrypted row: a version byte
//! and length-prefixed fields. Decoding checks every length and never panics.

use ema_jose::UnixTime;
use zeroize::Zeroizing;

use crate::credential::{Credential, CredentialStatus, StaticSecret, TokenSet};
use crate::secret::Secret;
use crate::store::StoredCredential;

const FORMAT: u8 = 1;
const OAUTH: u8 = 0;
const STATIC: u8 = 1;

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // Ids and tokens are far below 4 GiB; a longer field is cut off by the cast, so refuse
    // it at encode time instead (see `encode`).
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn put_opt(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(value) => {
            out.push(1);
            put_bytes(out, value.as_bytes());
        }
        None => out.push(0),
    }
}

/// Encodes `record` (the revision is the store's, not part of the payload).
pub(crate) fn encode(record: &StoredCredential) -> Result<Zeroizing<Vec<u8>>, String> {
    let mut out = Zeroizing::new(Vec::with_capacity(256));
    out.push(FORMAT);
    out.push(match record.status {
        CredentialStatus::NeedsReconnect => 1,
        _ => 0,
    });
    out.extend_from_slice(&record.updated_at.as_secs().to_be_bytes());
    let too_long = |s: &str| u32::try_from(s.len()).is_err();
    match &record.credential {
        Credential::OAuth(tokens) => {
            let fields = [tokens.access_token.expose(), tokens.token_type.as_str()];
            if fields.iter().any(|f| too_long(f))
                || tokens.scopes.iter().any(|s| too_long(s))
                || tokens
                    .refresh_token
                    .as_ref()
                    .is_some_and(|r| too_long(r.expose()))
            {
                return Err("a field is longer than 4 GiB".to_owned());
            }
            out.push(OAUTH);
            put_bytes(&mut out, tokens.access_token.expose().as_bytes());
            put_bytes(&mut out, tokens.token_type.as_bytes());
            match tokens.expires_at {
                Some(at) => {
                    out.push(1);
                    out.extend_from_slice(&at.as_secs().to_be_bytes());
                }
                None => out.push(0),
            }
            out.extend_from_slice(
                &u32::try_from(tokens.scopes.len())
                    .map_err(|_| "too many scopes".to_owned())?
                    .to_be_bytes(),
            );
            for scope in &tokens.scopes {
                put_bytes(&mut out, scope.as_bytes());
            }
            put_opt(&mut out, tokens.refresh_token.as_ref().map(Secret::expose));
        }
        Credential::Static(secret) => {
            if too_long(secret.secret.expose()) || secret.label.as_deref().is_some_and(too_long) {
                return Err("a field is longer than 4 GiB".to_owned());
            }
            out.push(STATIC);
            put_bytes(&mut out, secret.secret.expose().as_bytes());
            put_opt(&mut out, secret.label.as_deref());
        }
    }
    Ok(out)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let (head, rest) = self
            .0
            .split_at_checked(n)
            .ok_or_else(|| "the record is truncated".to_owned())?;
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?.first().copied().unwrap_or_default())
    }

    fn u32(&mut self) -> Result<u32, String> {
        let bytes: [u8; 4] = self
            .take(4)?
            .try_into()
            .map_err(|_| "the record is truncated".to_owned())?;
        Ok(u32::from_be_bytes(bytes))
    }

    fn u64(&mut self) -> Result<u64, String> {
        let bytes: [u8; 8] = self
            .take(8)?
            .try_into()
            .map_err(|_| "the record is truncated".to_owned())?;
        Ok(u64::from_be_bytes(bytes))
    }

    fn string(&mut self) -> Result<String, String> {
        let len = usize::try_from(self.u32()?).map_err(|_| "length out of range".to_owned())?;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| "a field is not UTF-8".to_owned())
    }

    fn flag(&mut self) -> Result<bool, String> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(format!("bad option tag {other}")),
        }
    }

    fn opt_string(&mut self) -> Result<Option<String>, String> {
        if self.flag()? {
            self.string().map(Some)
        } else {
            Ok(None)
        }
    }
}

/// Decodes a payload written by [`encode`].
pub(crate) fn decode(bytes: &[u8]) -> Result<StoredCredential, String> {
    let mut r = Reader(bytes);
    let format = r.u8()?;
    if format != FORMAT {
        return Err(format!("unknown record format {format}"));
    }
    let status = match r.u8()? {
        0 => CredentialStatus::Active,
        1 => CredentialStatus::NeedsReconnect,
        other => return Err(format!("unknown status {other}")),
    };
    let updated_at = UnixTime::from_secs(r.u64()?);
    let credential = match r.u8()? {
        OAUTH => {
            let access_token = Secret::new(r.string()?);
            let token_type = r.string()?;
            let expires_at = if r.flag()? {
                Some(UnixTime::from_secs(r.u64()?))
            } else {
                None
            };
            let count = r.u32()?;
            let mut scopes = Vec::new();
            for _ in 0..count {
                scopes.push(r.string()?);
            }
            let refresh_token = r.opt_string()?.map(Secret::new);
            let mut tokens = TokenSet::bearer(access_token).with_scopes(scopes);
            tokens.token_type = token_type;
            tokens.expires_at = expires_at;
            tokens.refresh_token = refresh_token;
            Credential::OAuth(tokens)
        }
        STATIC => {
            let secret = Secret::new(r.string()?);
            let mut secret = StaticSecret::new(secret);
            secret.label = r.opt_string()?;
            Credential::Static(secret)
        }
        other => return Err(format!("unknown credential kind {other}")),
    };
    if !r.0.is_empty() {
        return Err("trailing bytes after the record".to_owned());
    }
    Ok(StoredCredential::new(credential, updated_at).with_status(status))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn sample() -> StoredCredential {
        let tokens = TokenSet::bearer(Secret::new("at".to_owned()))
            .with_expires_at(UnixTime::from_secs(77))
            .with_scopes(["a", "b c"])
            .with_refresh_token(Secret::new("rt".to_owned()));
        StoredCredential::new(Credential::OAuth(tokens), UnixTime::from_secs(5))
            .with_status(CredentialStatus::NeedsReconnect)
    }

    #[test]
    fn round_trips_and_refuses_every_truncation() {
        let bytes = encode(&sample()).unwrap();
        let back = decode(&bytes).unwrap();
        assert_eq!(
            back.info(&crate::ProviderId::new("p").unwrap()),
            sample().info(&crate::ProviderId::new("p").unwrap())
        );
        assert_eq!(back.credential.secret().expose(), "at");
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = bytes.to_vec();
        long.push(0);
        assert!(decode(&long).is_err());
        let secret = StaticSecret::new(Secret::new("pw".to_owned())).with_label("l");
        let record = StoredCredential::new(Credential::Static(secret), UnixTime::from_secs(1));
        let back = decode(&encode(&record).unwrap()).unwrap();
        assert_eq!(
            back.info(&crate::ProviderId::new("p").unwrap())
                .label
                .as_deref(),
            Some("l")
        );
    }
}
