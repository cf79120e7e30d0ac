//! Resolving the local subject behind an ID-JAG (AS-16, D-14).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::claims::IdJagClaims;
use crate::trust::TrustedIssuer;

/// The authorization server's own view of the user, carried into the access token and from
/// there to the tool-call layer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct LocalSubject {
    /// The local user id: the access token's `sub`.
    pub id: String,
    /// The tenant the user belongs to here.
    pub tenant: Option<String>,
    /// Groups.
    pub groups: Vec<String>,
    /// Roles.
    pub roles: Vec<String>,
}

impl LocalSubject {
    /// A subject with an id and nothing else.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            ..Self::default()
        }
    }

    /// Sets the groups.
    #[must_use]
    pub fn with_groups<S: Into<String>>(mut self, groups: impl IntoIterator<Item = S>) -> Self {
        self.groups = groups.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the roles.
    #[must_use]
    pub fn with_roles<S: Into<String>>(mut self, roles: impl IntoIterator<Item = S>) -> Self {
        self.roles = roles.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the tenant.
    #[must_use]
    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }
}

/// Why no local subject was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubjectError {
    /// No mapping, and just-in-time provisioning is off or declined (D-14 → `invalid_grant`).
    #[error("subject is not known here")]
    Unknown,
    /// The directory could not be consulted (fail closed).
    #[error("subject directory unavailable: {reason}")]
    Unavailable {
        /// What went wrong.
        reason: String,
    },
}

/// Maps a validated ID-JAG to a local subject (AS-16). Called only after the signature, audience,
/// time, client and tenant checks have passed.
pub trait SubjectResolver: Send + Sync {
    /// Resolves the subject of `claims`, issued by `issuer`.
    fn resolve(
        &self,
        claims: &IdJagClaims,
        issuer: &TrustedIssuer,
    ) -> impl Future<Output = Result<LocalSubject, SubjectError>> + Send;
}

impl<R: SubjectResolver + ?Sized> SubjectResolver for Arc<R> {
    fn resolve(
        &self,
        claims: &IdJagClaims,
        issuer: &TrustedIssuer,
    ) -> impl Future<Output = Result<LocalSubject, SubjectError>> + Send {
        (**self).resolve(claims, issuer)
    }
}

/// The object-safe form of [`SubjectResolver`], for storing resolvers of different types behind
/// one pointer. Every [`SubjectResolver`] implements it; use it through [`DynSubjectResolver`].
pub trait ErasedSubjectResolver: Send + Sync {
    /// [`SubjectResolver::resolve`] with the future boxed.
    fn resolve_boxed<'a>(
        &'a self,
        claims: &'a IdJagClaims,
        issuer: &'a TrustedIssuer,
    ) -> Pin<Box<dyn Future<Output = Result<LocalSubject, SubjectError>> + Send + 'a>>;
}

impl<R: SubjectResolver> ErasedSubjectResolver for R {
    fn resolve_boxed<'a>(
        &'a self,
        claims: &'a IdJagClaims,
        issuer: &'a TrustedIssuer,
    ) -> Pin<Box<dyn Future<Output = Result<LocalSubject, SubjectError>> + Send + 'a>> {
        Box::pin(self.resolve(claims, issuer))
    }
}

/// Any [`SubjectResolver`] behind one cheap-to-clone, nameable type: the default subject
/// resolver of [`IdJagValidator`](crate::IdJagValidator) (and of `ema_grant::JwtBearerGrant`), so
/// that an application names the validator without a type parameter.
///
/// Resolving costs one boxed future per validated ID-JAG, next to a signature verification.
///
/// ```
/// use ema_id_jag::{Directory, DynSubjectResolver, LocalSubject};
///
/// // A directory here; a database-backed resolver erases the same way.
/// let subjects = DynSubjectResolver::new(
///     Directory::new().with_provisioning(|c| Some(LocalSubject::new(c.sub.as_str()))),
/// );
/// let shared = subjects.clone(); // one directory behind both
/// # let _ = shared;
/// ```
#[derive(Clone)]
pub struct DynSubjectResolver(Arc<dyn ErasedSubjectResolver>);

impl DynSubjectResolver {
    /// Erases the type of `resolver`.
    pub fn new(resolver: impl SubjectResolver + 'static) -> Self {
        Self(Arc::new(resolver))
    }

    /// Wraps a resolver already shared behind an `Arc`.
    pub fn from_arc(resolver: Arc<dyn ErasedSubjectResolver>) -> Self {
        Self(resolver)
    }
}

impl fmt::Debug for DynSubjectResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DynSubjectResolver(..)")
    }
}

impl SubjectResolver for DynSubjectResolver {
    // An `async fn` captures each borrowed lifetime on its own; the boxed future lives inside.
    async fn resolve(
        &self,
        claims: &IdJagClaims,
        issuer: &TrustedIssuer,
    ) -> Result<LocalSubject, SubjectError> {
        self.0.resolve_boxed(claims, issuer).await
    }
}

type Provisioner = dyn Fn(&IdJagClaims) -> Option<LocalSubject> + Send + Sync;

/// An in-memory directory: subjects keyed by (`iss`, `tenant`, `sub`), optionally by
/// (`iss`, `email`), with an optional just-in-time provisioning hook.
///
/// Lookup order (D-14): the `sub` mapping wins; then `email` if email linking is enabled; then
/// the provisioning hook; otherwise [`SubjectError::Unknown`].
///
/// ```
/// use ema_id_jag::{Directory, LocalSubject};
///
/// let dir = Directory::new()
///     .with_subject("https://idp.acme.example", None, "00u8k2Lq91", LocalSubject::new("u-17").with_groups(["eng"]));
/// // Or accept everyone the trusted IdP vouches for, under the IdP's own id:
/// let jit = Directory::new().with_provisioning(|c| Some(LocalSubject::new(c.sub.as_str())));
/// # let _ = (dir, jit);
/// ```
#[derive(Default, Clone)]
pub struct Directory {
    by_sub: HashMap<(String, Option<String>, String), LocalSubject>,
    by_email: Option<HashMap<(String, String), LocalSubject>>,
    provision: Option<Arc<Provisioner>>,
}

impl fmt::Debug for Directory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Directory")
            .field("subjects", &self.by_sub.len())
            .field("email_linking", &self.by_email.is_some())
            .field("provisioning", &self.provision.is_some())
            .finish()
    }
}

impl Directory {
    /// An empty directory with email linking and provisioning off.
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps (`iss`, `tenant`, `sub`) to `subject`.
    #[must_use]
    pub fn with_subject(
        mut self,
        iss: impl Into<String>,
        tenant: Option<&str>,
        sub: impl Into<String>,
        subject: LocalSubject,
    ) -> Self {
        self.by_sub
            .insert((iss.into(), tenant.map(str::to_owned), sub.into()), subject);
        self
    }

    /// Maps (`iss`, `email`) to `subject` and enables email linking.
    #[must_use]
    pub fn with_email(
        mut self,
        iss: impl Into<String>,
        email: impl Into<String>,
        subject: LocalSubject,
    ) -> Self {
        self.by_email
            .get_or_insert_with(HashMap::new)
            .insert((iss.into(), email.into()), subject);
        self
    }

    /// Installs a just-in-time provisioning hook, asked when no mapping matches.
    #[must_use]
    pub fn with_provisioning(
        mut self,
        hook: impl Fn(&IdJagClaims) -> Option<LocalSubject> + Send + Sync + 'static,
    ) -> Self {
        self.provision = Some(Arc::new(hook));
        self
    }

    /// Resolves without awaiting.
    pub fn lookup(&self, claims: &IdJagClaims) -> Result<LocalSubject, SubjectError> {
        let key = (
            claims.iss.as_str().to_owned(),
            claims.tenant.clone(),
            claims.sub.as_str().to_owned(),
        );
        // D-14: the `sub` mapping wins over email matching.
        if let Some(found) = self.by_sub.get(&key) {
            return Ok(found.clone());
        }
        if let (Some(emails), Some(email)) = (&self.by_email, &claims.email)
            && let Some(found) = emails.get(&(claims.iss.as_str().to_owned(), email.clone()))
        {
            return Ok(found.clone());
        }
        // D-14: unknown subject with JIT disabled (or declining) → `invalid_grant`.
        self.provision
            .as_ref()
            .and_then(|hook| hook(claims))
            .ok_or(SubjectError::Unknown)
    }
}

impl SubjectResolver for Directory {
    fn resolve(
        &self,
        claims: &IdJagClaims,
        _issuer: &TrustedIssuer,
    ) -> impl Future<Output = Result<LocalSubject, SubjectError>> + Send {
        std::future::ready(self.lookup(claims))
    }
}
